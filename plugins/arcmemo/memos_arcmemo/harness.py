"""The child side of :mod:`memos_arcmemo.sandbox`: this file is copied into the sandbox folder and run there
as ``python -I harness.py``; it is never imported by memos (standard library only, plus numpy if present).

Order matters: read the job and the program, lower the memory limit, leave the network (a fresh network
namespace where the kernel allows it), import numpy, restrict the file system with Landlock where the
kernel offers it (read-only: the interpreter's files; read-write: the folder; no TCP), install the audit
hook that refuses network, process and out-of-folder file access, and only then run the program.
"""

import io
import json
import os
import resource
import sys

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000

# Modules whose import is refused: they reach processes without raising an audit event of their own.
BLOCKED_IMPORTS = ("subprocess", "_posixsubprocess", "multiprocessing", "_multiprocessing", "pty", "pexpect")
# Audit events refused outright (prefix match on the part before the first dot, or the whole name).
BLOCKED_EVENTS = ("socket", "ctypes", "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
                  "os.fork", "os.forkpty", "os.kill", "os.killpg", "pty.spawn", "gc.get_objects",
                  "gc.get_referrers", "gc.get_referents", "sys.settrace", "sys.setprofile", "webbrowser.open",
                  "urllib.Request", "ftplib", "http.client", "smtplib", "poplib", "imaplib", "nntplib", "telnetlib")
# Events that write or move files: every path argument must lie inside the folder.
WRITE_EVENTS = ("os.remove", "os.rmdir", "os.rename", "os.mkdir", "os.symlink", "os.link", "os.truncate",
                "os.chmod", "os.chown", "os.utime", "os.chdir", "os.chflags", "os.lchflags", "os.setxattr",
                "os.removexattr", "shutil.copyfile", "shutil.copymode", "shutil.copystat", "shutil.copytree",
                "shutil.move", "shutil.rmtree", "shutil.make_archive", "shutil.unpack_archive", "tempfile.mkdtemp",
                "tempfile.mkstemp")
READ_EVENTS = ("os.listdir", "os.scandir")
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def leave_network():
    """Move into an empty network namespace (root, or unprivileged user namespaces); False if refused."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        for flags in (CLONE_NEWNET, CLONE_NEWUSER | CLONE_NEWNET):
            if libc.unshare(flags) == 0:
                return True
    except (OSError, AttributeError):
        pass
    return False


# Landlock (linux/landlock.h): syscall numbers are the same on every architecture
SYS_CREATE_RULESET, SYS_ADD_RULE, SYS_RESTRICT_SELF = 444, 445, 446
PR_SET_NO_NEW_PRIVS = 38
FS_EXECUTE, FS_READ_FILE, FS_READ_DIR = 1 << 0, 1 << 2, 1 << 3
FS_READ = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR


def landlock(folder, read_roots):
    """Allow reads under ``read_roots`` and everything under ``folder``, nothing else (no TCP either, on
    kernels with network rules); False where the kernel has no Landlock."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        abi = libc.syscall(SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
        if abi < 1:
            return False
        handled = (1 << 13) - 1  # ABI 1: execute .. make_sym
        handled |= (1 << 13 if abi >= 2 else 0) | (1 << 14 if abi >= 3 else 0) | (1 << 15 if abi >= 5 else 0)
        fields = [handled]
        if abi >= 4:
            fields.append(0b11)  # bind and connect TCP: handled, never allowed
        if abi >= 6:
            fields.append(0b11)  # abstract unix sockets and signals outside the sandbox: scoped
        attr = (ctypes.c_uint64 * len(fields))(*fields)
        ruleset = libc.syscall(SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)),
                               ctypes.c_uint32(0))
        if ruleset < 0:
            return False

        class PathBeneath(ctypes.Structure):
            _pack_ = 1
            _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]

        try:
            for path, access in [(root, FS_READ & handled) for root in read_roots] + [(folder, handled)]:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
                try:
                    rule = PathBeneath(access, fd)
                    if libc.syscall(SYS_ADD_RULE, ruleset, 1, ctypes.byref(rule), ctypes.c_uint32(0)) != 0:
                        return False
                finally:
                    os.close(fd)
            if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
                return False
            return libc.syscall(SYS_RESTRICT_SELF, ruleset, ctypes.c_uint32(0)) == 0
        finally:
            os.close(ruleset)
    except (OSError, AttributeError):
        return False


def read_roots():
    """The interpreter's own files (standard library, site-packages): readable so imports work."""
    real = os.path.realpath
    return tuple(sorted({real(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}))


def install_guard(folder):
    realpath, join, sep = os.path.realpath, os.path.join, os.sep
    folder, roots = realpath(folder), read_roots()
    blocked_imports, blocked_events = frozenset(BLOCKED_IMPORTS), BLOCKED_EVENTS
    write_events, read_events, write_flags = frozenset(WRITE_EVENTS), frozenset(READ_EVENTS), WRITE_FLAGS

    def inside(path, allowed):
        if isinstance(path, int) or path is None:
            return True  # an already open descriptor / the current folder
        if isinstance(path, bytes):
            path = path.decode(errors="replace")
        full = realpath(join(folder, str(path)))
        return any(full == r or full.startswith(r.rstrip(sep) + sep) for r in allowed)

    def hook(event, args):
        if event == "import":
            if args[0] in blocked_imports or str(args[0]).split(".")[0] in blocked_imports:
                raise PermissionError(f"sandbox: importing {args[0]} is not allowed")
            return
        if event == "open":
            path, mode, flags = args
            writing = any(c in str(mode or "") for c in "wax+") or bool((flags or 0) & write_flags)
            if not inside(path, (folder,) if writing else (folder, *roots)):
                what = "write" if writing else "read"
                raise PermissionError(f"sandbox: file access refused ({what} {path!r}: outside the sandbox folder)")
            return
        if event in read_events:
            if args and not inside(args[0], (folder, *roots)):
                raise PermissionError(f"sandbox: file access refused (list {args[0]!r})")
            return
        if event in write_events:
            for arg in args:
                if isinstance(arg, (str, bytes, os.PathLike)) and not inside(os.fspath(arg), (folder,)):
                    raise PermissionError(f"sandbox: file access refused ({event} {arg!r})")
            return
        if event.split(".")[0] in blocked_events or any(event.startswith(b) for b in blocked_events):
            kind = "network" if event.startswith(("socket", "urllib", "http", "ftp", "smtp")) else "system"
            raise PermissionError(f"sandbox: {kind} access refused ({event})")

    sys.addaudithook(hook)


def as_json(obj):
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"the program returned a {type(obj).__name__}, which is not a JSON value")


def plain(value):
    """A JSON value from what the program returned (numpy arrays and scalars become lists and numbers)."""
    return json.loads(json.dumps(value, allow_nan=False, default=as_json))


def describe(exc):
    return f"{type(exc).__name__}: {exc}"[:500]


def main():
    folder = os.getcwd()
    with open("job.json", encoding="utf-8") as f:
        job = json.load(f)
    os.remove("job.json")  # the nonce that marks the result must not be readable by the program
    with open("program.py", encoding="utf-8") as f:
        source = f.read()
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    limit = int(job["memory_mb"]) << 20
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard == resource.RLIM_INFINITY or limit < hard:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    os.environ.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    netns = leave_network()
    np = None
    try:
        import numpy as np
    except ImportError:
        pass
    sys.dont_write_bytecode = True
    fs_locked = landlock(os.path.realpath(folder), read_roots())
    if job.get("audit_hook", True):
        install_guard(folder)

    captured = io.StringIO()
    sys.stdout = sys.stderr = captured
    result = {"load_error": None, "calls": [], "netns": netns, "landlock": fs_locked}
    namespace = {"__name__": "program", "__builtins__": __builtins__}
    try:
        exec(compile(source, "program.py", "exec"), namespace)  # noqa: S102 - running it is the point
        fn = namespace.get(job["entry"])
        if not callable(fn):
            raise TypeError(f"the program defines no function {job['entry']}()")
    except BaseException as exc:  # noqa: BLE001 - the program's failure is the result
        result["load_error"] = describe(exc)
    else:
        for value in job["inputs"]:
            arg = np.array(value) if (job["as_array"] and np is not None) else value
            try:
                result["calls"].append({"ok": True, "output": plain(fn(arg)), "error": None})
            except BaseException as exc:  # noqa: BLE001 - reported per input
                result["calls"].append({"ok": False, "output": None, "error": describe(exc)})
    result["stdout"] = captured.getvalue()[-2000:]
    out.write("\n" + job["marker"] + json.dumps(result) + "\n")
    out.flush()


if __name__ == "__main__":
    main()
