"""Run a command under the system-call restrictions that deploy/photoq.service asks systemd for.

    python3 tests/service_sandbox.py deploy/photoq.service -- python3 photoq.pyz serve ...

Tests cannot start a systemd unit here, so this applies the unit's SystemCallFilter= (groups expanded by
`systemd-analyze syscall-filter`), SystemCallErrorNumber=, RestrictAddressFamilies= and MemoryDenyWriteExecute= the
way systemd 252 (Debian and Raspberry Pi OS Bookworm) does, as seccomp filters loaded through libseccomp, together
with no_new_privs, and then execs the command. The namespace and file-system options are not applied.
Runs with the standard library only, so the interpreter under test needs nothing installed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import socket
import subprocess
import sys
from pathlib import Path

ALLOW = 0x7FFF0000
CMP_EQ, CMP_GE, CMP_MASKED_EQ = 4, 5, 7
PROT_WRITE, PROT_EXEC, SHM_EXEC = 0x2, 0x4, 0o100000
HIGHEST_ADDRESS_FAMILY = 64


def errno_action(number: int) -> int:
    return 0x00050000 | (number & 0xFFFF)


def read_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """section -> key -> every value assigned, in order (systemd keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        if current is None or "=" not in line:
            raise ValueError(f"{path}: cannot read line {raw!r}")
        key, value = line.split("=", 1)
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def syscall_groups() -> dict[str, list[str]]:
    listing = subprocess.run(["systemd-analyze", "syscall-filter"], capture_output=True, text=True, check=True).stdout
    groups: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in listing.splitlines():
        text = line.strip()
        if text.startswith("@") and not line.startswith(" "):
            current = groups.setdefault(text, [])
        elif text and not text.startswith("#") and current is not None:
            current.append(text)
    return groups


def expand(names: list[str], groups: dict[str, list[str]]) -> set[str]:
    found: set[str] = set()
    for name in names:
        found |= expand(groups[name], groups) if name.startswith("@") else {name}
    return found


def allowed_syscalls(assignments: list[str], groups: dict[str, list[str]]) -> set[str] | None:
    """systemd's rule: the first assignment sets an allow-list, later ones add to it, `~` ones take away."""
    allowed: set[str] | None = None
    for value in assignments:
        if not value:
            allowed = None
            continue
        deny = value.startswith("~")
        names = expand(value.lstrip("~").split(), groups)
        if allowed is None and deny:
            raise ValueError("a deny-list SystemCallFilter= is not supported by this sandbox")
        allowed = (allowed or set()) - names if deny else (allowed or set()) | names
    return allowed


class ArgCompare(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


class Filter:
    """One seccomp filter; the kernel runs every loaded filter and the strictest answer wins."""

    def __init__(self, lib, default_action: int):
        self.lib = lib
        self.ctx = lib.seccomp_init(default_action)
        if not self.ctx:
            raise OSError("seccomp_init failed")

    def rule(self, action: int, name: str, *conditions: tuple[int, int, int, int]) -> bool:
        number = self.lib.seccomp_syscall_resolve_name(name.encode())
        if number == -1:  # not a system call of this architecture (e.g. arm_fadvise64_64 on x86-64)
            return False
        array = (ArgCompare * max(1, len(conditions)))(*[ArgCompare(*c) for c in conditions])
        return self.lib.seccomp_rule_add_array(self.ctx, action, number, len(conditions), array) == 0

    def load(self) -> None:
        result = self.lib.seccomp_load(self.ctx)
        if result != 0:
            raise OSError(-result, f"seccomp_load failed: {os.strerror(-result)}")
        self.lib.seccomp_release(self.ctx)


def libseccomp():
    name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    lib = ctypes.CDLL(name, use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                           ctypes.POINTER(ArgCompare)]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    return lib


def filters_for(service: dict[str, list[str]], lib) -> list[Filter]:
    filters = []
    error = errno_action(getattr(errno, service.get("SystemCallErrorNumber", ["EPERM"])[-1]))
    families = " ".join(service.get("RestrictAddressFamilies", [])).split()
    if families:
        permitted = {getattr(socket, family) for family in families}
        restrict = Filter(lib, ALLOW)
        for family in range(HIGHEST_ADDRESS_FAMILY):
            if family not in permitted:
                restrict.rule(errno_action(errno.EAFNOSUPPORT), "socket", (0, CMP_EQ, family, 0))
        restrict.rule(errno_action(errno.EAFNOSUPPORT), "socket", (0, CMP_GE, HIGHEST_ADDRESS_FAMILY, 0))
        filters.append(restrict)

    if service.get("MemoryDenyWriteExecute", ["no"])[-1] in ("yes", "true", "on", "1"):
        wx = Filter(lib, ALLOW)
        refused = errno_action(errno.EPERM)
        wx.rule(refused, "mmap", (2, CMP_MASKED_EQ, PROT_WRITE | PROT_EXEC, PROT_WRITE | PROT_EXEC))
        wx.rule(refused, "mprotect", (2, CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC))
        wx.rule(refused, "pkey_mprotect", (2, CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC))
        wx.rule(refused, "shmat", (2, CMP_MASKED_EQ, SHM_EXEC, SHM_EXEC))
        filters.append(wx)

    allowed = allowed_syscalls(service.get("SystemCallFilter", []), syscall_groups())
    if allowed is not None:  # loaded last: it takes away seccomp() itself
        allow_list = Filter(lib, error)
        for name in sorted(allowed):
            allow_list.rule(ALLOW, name)
        filters.append(allow_list)
    return filters


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] != "--":
        raise SystemExit("usage: service_sandbox.py UNIT -- COMMAND [ARG...]")
    service = read_unit(Path(argv[0])).get("Service", {})
    lib = libseccomp()
    for seccomp_filter in filters_for(service, lib):
        seccomp_filter.load()
    os.execvp(argv[2], argv[2:])


if __name__ == "__main__":
    main(sys.argv[1:])
