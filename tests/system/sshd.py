# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hosts reached over real SSH: one ``sshd`` per simulated host, each on a loopback address of its own.

``SSHHosts()`` makes one client key and a ``known_hosts`` file (in a directory of its own under /tmp); ``start(name, user="root")`` runs Debian's
``/usr/sbin/sshd`` in the foreground on ``127.0.0.N:22`` (N from 10 up) with its own config and host key, key
login only, ``UsePAM no``. ``user`` may be the unprivileged ``UNPRIVILEGED`` account (made on first use, with a
home directory and a sudoers rule without password, so that ``become`` works as on a real fleet). ``inventory_vars``
gives what Ansible needs to reach the host with its default SSH settings. ``stop()`` stops every sshd and removes the
sudoers rule; the account stays (creating and deleting accounts on every run would race with other sessions).
"""

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time

SSHD = "/usr/sbin/sshd"
UNPRIVILEGED = "airgap-ssh"
SUDOERS = "/etc/sudoers.d/airgap-images-tests"
FIRST_ADDRESS = 10


class SSHHost:
    def __init__(self, name, address, user, process, config):
        self.name = name
        self.address = address
        self.user = user
        self.process = process
        self.config = config


class SSHHosts:
    def __init__(self):
        # sshd reads AuthorizedKeysFile as the login user: every directory above it must be open to that user, which
        # pytest's private temp directories are not.
        self.dir = tempfile.mkdtemp(prefix="airgap-sshd-")
        os.chmod(self.dir, 0o755)
        self.client_key = os.path.join(self.dir, "client_key")
        _keygen(self.client_key)
        self.authorized_keys = self.client_key + ".pub"
        os.chmod(self.authorized_keys, 0o644)
        self.known_hosts = os.path.join(self.dir, "known_hosts")
        self.hosts = {}
        self._sudoers_written = False
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory

    def start(self, name, user="root"):
        if user == UNPRIVILEGED:
            self._ensure_unprivileged_user()
        address = "127.0.0.%d" % (FIRST_ADDRESS + len(self.hosts))
        host_dir = os.path.join(self.dir, name)
        os.makedirs(host_dir)
        host_key = os.path.join(host_dir, "host_key")
        _keygen(host_key)
        config = os.path.join(host_dir, "sshd_config")
        with open(config, "w") as out:
            out.write("\n".join([
                "ListenAddress %s:22" % address,
                "HostKey %s" % host_key,
                "PidFile %s" % os.path.join(host_dir, "sshd.pid"),
                "AuthorizedKeysFile %s" % self.authorized_keys,
                "AllowUsers %s" % user,
                "PermitRootLogin prohibit-password",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                "MaxSessions 50",
                "MaxStartups 50",
                "Subsystem sftp internal-sftp",
                "LogLevel ERROR",
            ]) + "\n")
        log = open(os.path.join(host_dir, "sshd.log"), "wb")
        process = subprocess.Popen([SSHD, "-D", "-e", "-f", config], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        _wait_listening(address, process, os.path.join(host_dir, "sshd.log"))
        with open(host_key + ".pub") as key, open(self.known_hosts, "a") as known:
            known.write("%s %s\n" % (address, " ".join(key.read().split()[:2])))
        host = SSHHost(name, address, user, process, config)
        self.hosts[name] = host
        return host

    def inventory_vars(self, host, python="/usr/bin/python3"):
        """Ansible's default SSH settings (ssh_args, no pipelining), plus this host's address, user, key and known hosts."""
        found = dict(ansible_host=host.address, ansible_user=host.user, ansible_ssh_private_key_file=self.client_key,
                     ansible_ssh_common_args="-o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes" % self.known_hosts,
                     ansible_python_interpreter=python)
        if host.user != "root":
            found.update(ansible_become="true", ansible_become_method="sudo")
        return found

    def ssh(self, host, command):
        """Run ``command`` on ``host`` over SSH as its user; a CompletedProcess with text output."""
        return subprocess.run(["ssh", "-i", self.client_key, "-o", "UserKnownHostsFile=" + self.known_hosts,
                               "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "%s@%s" % (host.user, host.address),
                               command], capture_output=True, text=True, timeout=60, check=False)

    def _ensure_unprivileged_user(self):
        try:
            pwd.getpwnam(UNPRIVILEGED)
        except KeyError:
            # "*": no password, yet not locked ("!"), which sshd refuses without PAM
            subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", "--password", "*", UNPRIVILEGED], check=True)
        if not self._sudoers_written:
            with open(SUDOERS + ".tmp", "w") as out:
                out.write("%s ALL=(ALL) NOPASSWD: ALL\n" % UNPRIVILEGED)
            os.chmod(SUDOERS + ".tmp", 0o440)
            os.rename(SUDOERS + ".tmp", SUDOERS)
            self._sudoers_written = True

    def stop(self):
        for host in self.hosts.values():
            if host.process.poll() is None:
                host.process.terminate()
                try:
                    host.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    host.process.kill()
                    host.process.wait()
        self.hosts = {}
        if self._sudoers_written and os.path.exists(SUDOERS):
            os.remove(SUDOERS)
        shutil.rmtree(self.dir, ignore_errors=True)


def _keygen(path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "airgap-images-tests", "-f", path], check=True)


def _wait_listening(address, process, log, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            with open(log) as handle:
                raise RuntimeError("sshd on %s exited %d: %s" % (address, process.returncode, handle.read()[-2000:]))
        try:
            socket.create_connection((address, 22), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("sshd on %s did not listen within %d s" % (address, timeout))
