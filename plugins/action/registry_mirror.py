# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""airgap.images.registry_mirror: in Ansible's worker process when the task runs on the controller, else as a module."""

from ansible_collections.airgap.images.plugins.plugin_utils.in_worker import ModuleAction


class ActionModule(ModuleAction):
    pass
