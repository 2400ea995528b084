"""A FUSE filesystem that forgets, on a simulated power cut, everything that was never made durable.

A passthrough over a backing directory that also keeps the durable state, by the strict POSIX rules:

- a file's content is durable as of its last fsync/fdatasync; writes and truncations since are lost on a cut
  (a file never fsynced comes back empty, if its name survives at all);
- a directory's entries are durable as of its last fsync of that directory; creates, renames and unlinks since are
  undone (a file renamed into a directory that was fsynced, out of one that was not, comes back under both names);
- a new directory starts empty; its own name in its parent is durable only once the parent is fsynced.

So SQLite's WAL frames that were never synced, an upload renamed into place without a directory fsync, or a
directory created without an fsync of its parent are all lost, as on a real disk after a pulled plug.

How: the backing directory holds the live (volatile) state and the kernel sees it through the mount. Per inode
the daemon records the durable content: for a file that existed when it was mounted, a hard link taken at mount time
(the durable content is the unchanged file until its first change, when a private copy is made first); for others, a
snapshot file updated on fsync with the byte ranges written since the last one. Per directory it records the entries
(name -> inode) as of its last fsync. A power cut is: kill every process using the mount, unmount, and rebuild the
backing directory from the durable records alone (`PowerCutFS.power_cut`). A clean unmount keeps the live state.

Not modelled (nothing here needs them): hard links and symlinks (refused), extended attributes, and the durability
of metadata other than names, sizes and content (modes are kept as of the last fsync of the file).

Run as a daemon: python powercut_fs.py BACKING MOUNTPOINT STATE_DIR (foreground; the test helper below starts it).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ON_EXIT = "on-exit"  # in STATE_DIR: "cut" (the default) or "keep", read by the daemon when it is unmounted
STATS = "stats.json"  # in STATE_DIR: what the daemon saw (fsyncs, dropped writes), written at exit


@dataclass
class Node:
    kind: str  # "file" or "dir"
    durable_entries: dict[str, int] = field(default_factory=dict)  # dir: name -> node id, as of its last fsync
    durable: str | None = None  # file: where its durable content lies; None = empty
    shared: bool = False  # file: `durable` is a hard link to the live inode, unchanged since mount
    dirty: list[tuple[int, int]] = field(default_factory=list)  # file: (offset, length) written since last fsync
    truncated_to: int | None = None  # file: smallest size it was cut to since last fsync
    mode: int = 0o644


class ForgetfulOperations:
    """The FUSE operations (mfusepy's high-level API, single-threaded)."""

    use_ns = True

    def __init__(self, backing: Path, state: Path):
        self.backing = backing
        self.state = state
        self.snapshots = state / "snapshots"
        self.snapshots.mkdir(parents=True, exist_ok=True)
        self.nodes: dict[int, Node] = {}
        self.ids: dict[int, int] = {}  # live st_ino -> node id
        self.open_files: dict[int, int] = {}  # fh (backing fd) -> node id
        self.next_id = 0
        self.counts = {"fsync": 0, "fsyncdir": 0, "writes": 0}
        self.root_id = self._scan(backing)

    # -- bookkeeping -----------------------------------------------------------------------------------------

    def _new_node(self, st_ino: int, node: Node) -> int:
        self.next_id += 1
        self.nodes[self.next_id] = node
        self.ids[st_ino] = self.next_id
        return self.next_id

    def _scan(self, directory: Path) -> int:
        """At mount: everything already in the backing directory is durable."""
        st = os.lstat(directory)
        dir_id = self._new_node(st.st_ino, Node("dir", mode=stat.S_IMODE(st.st_mode)))
        entries = {}
        for entry in os.scandir(directory):
            if entry.is_dir(follow_symlinks=False):
                entries[entry.name] = self._scan(Path(entry.path))
            elif entry.is_file(follow_symlinks=False):
                est = entry.stat(follow_symlinks=False)
                file_id = self._new_node(est.st_ino, Node("file", shared=True, mode=stat.S_IMODE(est.st_mode)))
                link = self.snapshots / f"orig-{file_id}"
                os.link(entry.path, link)
                self.nodes[file_id].durable = str(link)
                entries[entry.name] = file_id
        self.nodes[dir_id].durable_entries = entries
        return dir_id

    def _path(self, path: str) -> str:
        return str(self.backing) + path

    def _id_of(self, path: str) -> int:
        st = os.lstat(self._path(path))
        node_id = self.ids.get(st.st_ino)
        if node_id is None:  # cannot happen for what was made through the mount; be safe
            node_id = self._new_node(st.st_ino, Node("dir" if stat.S_ISDIR(st.st_mode) else "file"))
        return node_id

    def _forget_name(self, path: str) -> None:
        """The live name goes away (unlink, rmdir, rename over it): its inode no longer has a live name."""
        try:
            st = os.lstat(self._path(path))
        except FileNotFoundError:
            return
        self.ids.pop(st.st_ino, None)

    def _before_change(self, node: Node) -> None:
        """A file about to change: if its durable content is still the live inode itself, copy it aside first."""
        if node.kind == "file" and node.shared:
            assert node.durable is not None
            private = node.durable + ".copy"
            shutil.copyfile(node.durable, private)
            os.unlink(node.durable)
            node.durable, node.shared = private, False

    def _commit_content(self, node_id: int, fd: int) -> None:
        node = self.nodes[node_id]
        st = os.fstat(fd)
        node.mode = stat.S_IMODE(st.st_mode)
        if node.shared:
            return  # unchanged since mount
        if node.durable is None:
            node.durable = str(self.snapshots / f"snap-{node_id}")
            Path(node.durable).touch()
        with open(node.durable, "r+b") as out:
            if node.truncated_to is not None:
                out.truncate(node.truncated_to)
            out.truncate(st.st_size)
            for offset, length in _merged(node.dirty):
                data = os.pread(fd, length, offset)
                if data:
                    out.seek(offset)
                    out.write(data)
        node.dirty.clear()
        node.truncated_to = None

    # -- FUSE operations -------------------------------------------------------------------------------------

    def getattr(self, path, fh=None):
        st = os.fstat(fh) if fh is not None and path is None else os.lstat(self._path(path))
        attrs = {key: getattr(st, key) for key in ("st_mode", "st_uid", "st_gid", "st_size", "st_blocks",
                                                    "st_blksize", "st_ino", "st_dev")}
        attrs["st_nlink"] = st.st_nlink if stat.S_ISDIR(st.st_mode) else 1  # our own hard links are not the user's
        attrs.update(st_atime=st.st_atime_ns, st_mtime=st.st_mtime_ns, st_ctime=st.st_ctime_ns)
        return attrs

    def access(self, path, amode):
        if not os.access(self._path(path), amode):
            raise OSError(errno.EACCES, "access")
        return 0

    def readdir(self, path, fh):
        return [".", "..", *os.listdir(self._path(path))]

    def opendir(self, path):
        return 0

    def releasedir(self, path, fh):
        return 0

    def statfs(self, path):
        sv = os.statvfs(self._path(path))
        return {key: getattr(sv, key) for key in ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail",
                                                   "f_ffree", "f_files", "f_flag", "f_frsize", "f_namemax")}

    def chmod(self, path, mode):
        os.chmod(self._path(path), mode)
        return 0

    def chown(self, path, uid, gid):
        os.lchown(self._path(path), uid, gid)
        return 0

    def utimens(self, path, times=None):
        os.utime(self._path(path), ns=times)
        return 0

    def mkdir(self, path, mode):
        os.mkdir(self._path(path), mode)
        st = os.lstat(self._path(path))
        self._new_node(st.st_ino, Node("dir", mode=stat.S_IMODE(st.st_mode)))
        return 0

    def rmdir(self, path):
        st = os.lstat(self._path(path))
        os.rmdir(self._path(path))
        self.ids.pop(st.st_ino, None)
        return 0

    def unlink(self, path):
        st = os.lstat(self._path(path))
        os.unlink(self._path(path))
        self.ids.pop(st.st_ino, None)
        return 0

    def rename(self, old, new):
        self._forget_name(new)
        os.rename(self._path(old), self._path(new))
        return 0

    def link(self, target, source):
        raise OSError(errno.EPERM, "hard links are not modelled")

    def symlink(self, target, source):
        raise OSError(errno.EPERM, "symlinks are not modelled")

    def mknod(self, path, mode, dev):
        raise OSError(errno.EPERM, "device nodes are not modelled")

    def create(self, path, mode, flags):
        fd = os.open(self._path(path), _readable(flags | os.O_CREAT), mode)
        st = os.fstat(fd)
        node_id = self.ids.get(st.st_ino)
        if node_id is None:
            node_id = self._new_node(st.st_ino, Node("file", mode=stat.S_IMODE(st.st_mode)))
        self.open_files[fd] = node_id
        return fd

    def open(self, path, flags):
        node_id = self._id_of(path)
        if flags & os.O_TRUNC:
            self._truncated(node_id, 0)
        fd = os.open(self._path(path), _readable(flags & ~(os.O_CREAT | os.O_EXCL)))
        self.open_files[fd] = node_id
        return fd

    def _truncated(self, node_id: int, length: int) -> None:
        node = self.nodes[node_id]
        self._before_change(node)
        node.truncated_to = length if node.truncated_to is None else min(node.truncated_to, length)

    def truncate(self, path, length, fh=None):
        if path is None:
            if fh is None:
                raise OSError(errno.EBADF, "truncate of an unlinked file without a handle")
            self._truncated(self.open_files[fh], length)
            os.ftruncate(fh, length)
        else:
            self._truncated(self._id_of(path), length)
            os.truncate(self._path(path), length)
        return 0

    def read(self, path, size, offset, fh):
        return os.pread(fh, size, offset)

    def write(self, path, data, offset, fh):
        node_id = self.open_files[fh]
        node = self.nodes[node_id]
        self._before_change(node)
        written = os.pwrite(fh, data, offset)
        node.dirty.append((offset, written))
        self.counts["writes"] += 1
        return written

    def flush(self, path, fh):
        return 0

    def release(self, path, fh):
        self.open_files.pop(fh, None)
        os.close(fh)
        return 0

    def fsync(self, path, datasync, fh):
        self.counts["fsync"] += 1
        self._commit_content(self.open_files[fh], fh)
        return 0

    def fsyncdir(self, path, datasync, fh):
        self.counts["fsyncdir"] += 1
        directory = self._path(path)
        node = self.nodes[self._id_of(path)]
        node.durable_entries = {name: self._id_of(f"{path.rstrip('/')}/{name}") for name in os.listdir(directory)}
        return 0

    # -- at exit ---------------------------------------------------------------------------------------------

    def rebuild_durable(self) -> dict[str, int]:
        """The power cut: replace the backing directory by what was durable. Returns what was dropped."""
        self.counts["unsynced_files"] = sum(1 for n in self.nodes.values() if n.kind == "file" and n.dirty)
        uses: dict[int, int] = {}
        self._count_uses(self.root_id, uses, set())
        fresh = self.backing.with_name(self.backing.name + ".rebuilding")
        shutil.rmtree(fresh, ignore_errors=True)
        self._build(self.root_id, fresh, uses, set())
        old = self.backing.with_name(self.backing.name + ".lost")
        os.rename(self.backing, old)
        os.rename(fresh, self.backing)
        shutil.rmtree(old)
        return self.counts

    def _count_uses(self, dir_id: int, uses: dict[int, int], seen: set[int]) -> None:
        if dir_id in seen:
            return
        seen.add(dir_id)
        for child in self.nodes[dir_id].durable_entries.values():
            uses[child] = uses.get(child, 0) + 1
            if self.nodes[child].kind == "dir":
                self._count_uses(child, uses, seen)

    def _build(self, dir_id: int, target: Path, uses: dict[int, int], seen: set[int]) -> None:
        seen.add(dir_id)
        os.mkdir(target, self.nodes[dir_id].mode)
        for name, child_id in self.nodes[dir_id].durable_entries.items():
            child = self.nodes[child_id]
            if child.kind == "dir":
                if child_id not in seen:  # a directory renamed under itself before its old parent was synced
                    self._build(child_id, target / name, uses, seen)
            elif child.durable is None:
                (target / name).touch(child.mode)
            elif uses[child_id] == 1:
                os.link(child.durable, target / name)
            else:
                shutil.copyfile(child.durable, target / name)
            if child.kind == "file":
                os.chmod(target / name, child.mode)


def _readable(flags: int) -> int:
    """Backing files are opened readable (fsync reads back what was written) and without O_APPEND (the kernel sends
    the offset of every write, appends included)."""
    if flags & os.O_ACCMODE == os.O_WRONLY:
        flags = flags & ~os.O_ACCMODE | os.O_RDWR
    return flags & ~os.O_APPEND


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[list[int]] = []
    for offset, length in sorted(ranges):
        if merged and offset <= merged[-1][0] + merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], offset + length - merged[-1][0])
        else:
            merged.append([offset, length])
    return [(o, n) for o, n in merged]


def serve(backing: Path, mountpoint: Path, state: Path) -> None:
    import logging

    import mfusepy

    logging.basicConfig(level=logging.DEBUG if os.environ.get("POWERCUT_FS_DEBUG") else logging.WARNING)
    operations = ForgetfulOperations(backing, state)
    # Single-threaded, no kernel write-back cache: every write() reaches the daemon before it returns, so nothing
    # is hidden in the kernel (shared mmap, which SQLite's -shm needs, still works: direct_io is off). hard_remove:
    # an unlinked open file is not renamed to .fuse_hidden*.
    mfusepy.FUSE(operations, str(mountpoint), foreground=True, nothreads=True, fsname="powercutfs",
                 hard_remove=True, default_permissions=True)
    choice = (state / ON_EXIT).read_text().strip() if (state / ON_EXIT).exists() else "cut"
    counts = operations.rebuild_durable() if choice == "cut" else operations.counts
    (state / STATS).write_text(json.dumps(counts))
    for name in os.listdir(operations.snapshots):
        os.unlink(operations.snapshots / name)


# -- the test helper ---------------------------------------------------------------------------------------------


class FuseUnavailable(RuntimeError):
    pass


def fuse_problem() -> str | None:
    """Why a FUSE filesystem cannot be mounted here, or None."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is absent: this kernel or container offers no FUSE, so power cuts cannot be simulated"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is missing: install Debian's fuse3 (make test does, as root)"
    try:
        import mfusepy  # noqa: F401  (loads libfuse3)
    except (ImportError, OSError) as exc:
        return f"the FUSE binding cannot load libfuse3: {exc}"
    return None


class PowerCutFS:
    """Mount, power-cut and remount a forgetful filesystem: `with PowerCutFS(tmp_path) as fs: fs.mountpoint`."""

    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.backing = self.workdir / "backing"
        self.mountpoint = self.workdir / "mnt"
        self.state = self.workdir / "fs-state"
        self.log_path = self.workdir / "powercut-fs.log"
        self.daemon: subprocess.Popen | None = None
        self.cuts = 0
        self.last_stats: dict[str, int] = {}

    def __enter__(self) -> PowerCutFS:
        self.backing.mkdir(parents=True, exist_ok=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        self.mount()
        return self

    def __exit__(self, *exc) -> None:
        if self.daemon is None:
            return
        try:
            self.unmount(keep=True)
        finally:
            if self.daemon is not None:  # the unmount failed: never leave a mount behind in a temp dir
                subprocess.run(["fusermount3", "-uz", str(self.mountpoint)], check=False, capture_output=True)
                self.daemon.kill()
                self.daemon.wait(10)
                self.daemon = None

    def mount(self, timeout: float = 20) -> None:
        problem = fuse_problem()
        if problem:
            raise FuseUnavailable(problem)
        shutil.rmtree(self.state, ignore_errors=True)
        self.state.mkdir(parents=True)
        with open(self.log_path, "ab") as log:
            self.daemon = subprocess.Popen([sys.executable, __file__, str(self.backing), str(self.mountpoint),
                                            str(self.state)], stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True)
        deadline = time.monotonic() + timeout
        while not os.path.ismount(self.mountpoint):
            if self.daemon.poll() is not None:
                raise FuseUnavailable(f"the FUSE daemon exited with {self.daemon.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise FuseUnavailable(f"the FUSE filesystem did not mount:\n{self.log()}")
            time.sleep(0.02)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def unmount(self, keep: bool) -> dict[str, int]:
        """Unmount; keep=False drops everything that was not durable (the caller has killed the mount's users)."""
        assert self.daemon is not None
        (self.state / ON_EXIT).write_text("keep" if keep else "cut")
        deadline = time.monotonic() + 60
        while True:
            done = subprocess.run(["fusermount3", "-u", str(self.mountpoint)], check=False, capture_output=True,
                                  text=True)
            if done.returncode == 0:
                break
            if "busy" not in done.stderr or time.monotonic() > deadline:
                raise RuntimeError(f"fusermount3 -u failed: {done.stderr}")
            time.sleep(0.05)  # a killed process (an image process of the server) not yet gone
        returncode = self.daemon.wait(60)
        self.daemon = None
        if returncode != 0:
            raise RuntimeError(f"the FUSE daemon exited with {returncode}:\n{self.log()}")
        self.last_stats = json.loads((self.state / STATS).read_text())
        return self.last_stats

    def power_cut(self) -> dict[str, int]:
        """Cut the power (the caller has SIGKILLed every process using the mount) and bring the disk back."""
        stats = self.unmount(keep=False)
        self.cuts += 1
        self.mount()
        return stats


if __name__ == "__main__":
    serve(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
