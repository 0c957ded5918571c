"""Escape attempts, run inside the sandbox: by `ire sandbox run` (as `python3 -c`) and by a
real confined worker (tests/sandbox_probe_launcher.py).

Each probe takes a dict of arguments and returns a dict describing what happened; the
test decides whether that is contained. Standard library only, and only modules the
worker already has loaded: a confined worker cannot import anything new.
"""

import ctypes
import errno
import json
import os
import signal
import socket
import time

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _errno_of(fn):
    try:
        fn()
    except OSError as exc:
        return exc.errno
    return 0


def _sys(number, *args):
    result = _libc.syscall(ctypes.c_long(number), *[ctypes.c_long(a) for a in args])
    return 0 if result >= 0 else ctypes.get_errno()


def sockets(_args):
    found = {}
    for name, family in (("inet", socket.AF_INET), ("inet6", socket.AF_INET6), ("unix", socket.AF_UNIX)):
        found[name] = _errno_of(lambda family=family: socket.socket(family, socket.SOCK_STREAM).close())
    found["socketpair"] = _errno_of(lambda: [s.close() for s in socket.socketpair()])
    return found


def connect(args):
    def attempt():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(1)
        s.connect(("127.0.0.1", args["port"]))

    return {"errno": _errno_of(attempt)}


def read_files(args):
    found = {}
    for path in args["paths"]:
        try:
            if os.path.isdir(path):
                found[path] = "listed: " + ",".join(os.listdir(path))
            else:
                with open(path, "rb") as f:
                    found[path] = "read: " + f.read(64).hex()
        except OSError as exc:
            found[path] = f"errno {exc.errno}"
    return found


def write_files(args):
    found = {}
    for path in args["paths"]:
        try:
            with open(path, "wb") as f:
                f.write(b"escaped")
            found[path] = "written"
        except OSError as exc:
            found[path] = f"errno {exc.errno}"
    return found


def fork_bomb(args):
    children = []
    error = 0
    for _ in range(args["tries"]):
        try:
            pid = os.fork()
        except OSError as exc:
            error = exc.errno
            break
        if pid == 0:
            time.sleep(30)
            os._exit(0)
        children.append(pid)
    for pid in children:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    return {"forked": len(children), "errno": error}


def memory_bomb(args):
    blocks = []
    for _ in range(args["mib"]):
        blocks.append(bytearray(1024 * 1024))  # zero-filled: every page touched
    return {"allocated_mib": len(blocks)}


def cpu_spin(args):
    wall0, cpu0 = time.monotonic(), time.process_time()
    while time.monotonic() - wall0 < args["seconds"]:
        pass
    return {"wall": time.monotonic() - wall0, "cpu": time.process_time() - cpu0}


def ptrace(args):
    ptrace_attach = 16
    result = {"ptrace": _sys(101, ptrace_attach, args["pid"], 0, 0)}
    result["proc_mem"] = _errno_of(lambda: open(f"/proc/{args['pid']}/mem", "rb").close())
    return result


def namespaces(_args):
    clone_newuser, sigchld = 0x10000000, 17
    result = {
        "mount": _errno_of(lambda: _check(_libc.mount(b"none", b"/tmp", b"tmpfs", 0, None))),
        "unshare_user": _errno_of(lambda: _check(_libc.unshare(clone_newuser))),
        "unshare_net": _errno_of(lambda: _check(_libc.unshare(0x40000000))),
        "clone_newuser": _sys(56, clone_newuser | sigchld, 0, 0, 0, 0),
        "clone3": _sys(435, 0, 0),
    }
    fd = os.open("/proc/self/ns/net", os.O_RDONLY)
    result["setns"] = _errno_of(lambda: _check(_libc.setns(fd, 0)))
    os.close(fd)
    return result


def _check(rc):
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def proc_environ(args):
    found = {}
    for path in ("/proc/1/environ", "/proc/1/cmdline", *(f"/proc/{pid}/environ" for pid in args.get("pids", []))):
        try:
            with open(path, "rb") as f:
                found[path] = f.read().hex()
        except OSError as exc:
            found[path] = f"errno {exc.errno}"
    found["pids"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    return found


def signal_other(args):
    result = {"kill": _errno_of(lambda: os.kill(args["pid"], signal.SIGKILL))}
    return result


def exec_binary(args):
    return {"errno": _errno_of(lambda: os.execv(args["path"], [args["path"]]))}


def open_devices(args):
    """Open each path read-write: 0, or the errno that refused it."""
    return {path: _errno_of(lambda path=path: os.close(os.open(path, os.O_RDWR))) for path in args["paths"]}


def environment(_args):
    return dict(os.environ)


def identity(_args):
    with open("/proc/self/status") as f:
        status = dict(line.split(":\t", 1) for line in f.read().splitlines() if ":\t" in line)
    return {
        "uid": os.getuid(),
        "gid": os.getgid(),
        "groups": os.getgroups(),
        "pid": os.getpid(),
        "cap_eff": status["CapEff"].strip(),
        "cap_bnd": status["CapBnd"].strip(),
        "no_new_privs": status["NoNewPrivs"].strip(),
        "seccomp": status["Seccomp"].strip(),
        "hostname": socket.gethostname(),
    }


PROBES = {
    f.__name__: f
    for f in (
        sockets,
        connect,
        read_files,
        write_files,
        fork_bomb,
        memory_bomb,
        cpu_spin,
        ptrace,
        namespaces,
        proc_environ,
        signal_other,
        exec_binary,
        open_devices,
        environment,
        identity,
    )
}


def main(name, args):
    """Run probe ``name`` and print its JSON result on one line."""
    print(json.dumps(PROBES[name](args)), flush=True)


_ = errno
