"""The `openstack` CLI for the tests, imported once: each command runs in a child forked from
this process, through the CLI's own entry point (`openstackclient.shell.main(argv)`, which is
all the `openstack` script does), with the command's environment and its own stdout and
stderr. Only the imports (most of a command's second) are shared; each command starts from
them afresh, as a new `openstack` process would.

Protocol, on the Unix socket given as the only argument: one request per connection, a JSON
object {"args": [...], "env": {...}} followed by the end of the client's writing; one answer,
{"status": int, "stdout": str, "stderr": str}.
"""

import json
import os
import signal
import socket
import sys
import tempfile

# What every command needs, loaded before the first fork: the shell, the SDK, the clients'
# plugins that the shell's command manager enumerates, and the command modules the tests use.
from openstackclient import shell  # noqa: E402
import openstack  # noqa: F401,E402
import openstackclient.compute.v2.server  # noqa: F401,E402
import openstackclient.compute.v2.flavor  # noqa: F401,E402
import openstackclient.network.v2.network  # noqa: F401,E402
import openstackclient.network.v2.port  # noqa: F401,E402
import openstackclient.network.v2.subnet  # noqa: F401,E402
import openstackclient.identity.v3.project  # noqa: F401,E402
import openstackclient.image.v2.image  # noqa: F401,E402


def run(conn):
    # The CLI's own children (if any) are its to wait for.
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    data = b""
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    request = json.loads(data)
    os.environ.update(request.get("env", {}))
    # Nothing to read, as for a command run with its stdin closed (ours is the tests' pipe).
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        try:
            status = shell.main(list(request["args"]))
        except SystemExit as e:
            # As the interpreter reads it: None is success, an int the status, else failure.
            status = 0 if e.code is None else e.code if isinstance(e.code, int) else 1
        except BaseException:  # the CLI's own crash, as the script would show it
            import traceback

            traceback.print_exc()
            status = 1
        sys.stdout.flush()
        sys.stderr.flush()
        answer = {"status": status or 0}
        for name, f in (("stdout", out), ("stderr", err)):
            f.seek(0)
            answer[name] = f.read().decode("utf-8", "replace")
    conn.sendall(json.dumps(answer).encode())
    conn.close()


def main():
    path = sys.argv[1]
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(64)
    # Children are reaped by the kernel; the server only forks.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    # The tests' process ends us by closing our stdin (or killing us).
    import threading

    def watch_stdin():
        sys.stdin.buffer.read()
        os._exit(0)

    threading.Thread(target=watch_stdin, daemon=True).start()
    print("ready", flush=True)
    while True:
        conn, _ = server.accept()
        if os.fork() == 0:
            server.close()
            try:
                run(conn)
            finally:
                os._exit(0)
        conn.close()


if __name__ == "__main__":
    main()
