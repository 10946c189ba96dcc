# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)


class ModuleDocFragment:
    """The attributes every module of the collection documents."""

    DOCUMENTATION = r"""
attributes:
  check_mode:
    description: Can run in C(check_mode) and return changed status prediction without modifying target.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in C(check_mode)), when in diff mode.
  idempotent:
    description:
      - When run twice in a row outside check mode, with the same arguments, the second invocation indicates no change.
"""

    ACTIONGROUP = r"""
attributes:
  action_group:
    description: Use C(group/airgap.images.images) in C(module_defaults) to set options once for all modules of the collection.
    support: full
    membership:
      - airgap.images.images
"""

    IN_WORKER = r"""
attributes:
  action:
    support: full
    description: >-
      An action plugin runs the module on the controller inside Ansible's worker process (no module payload, no new
      Python) when the task's connection is C(local) and it asks for no C(become), C(async), C(environment), and no
      C(ansible_python_interpreter) other than the Python running Ansible; otherwise the module runs as Ansible runs
      any module. Both ways return the same result.
"""
