"""Code run inside sandboxes by the isolation tests; each prints one JSON line."""

CONNECT = """
import json, socket, sys
result = {}
for host, port in json.loads(sys.argv[1]):
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect((host, port))
        result[f"{host}:{port}"] = "connected"
    except OSError as exc:
        result[f"{host}:{port}"] = f"{type(exc).__name__}: {exc}"
    finally:
        s.close()
print(json.dumps(result))
"""

NETWORK = """
import json, socket, subprocess
def table(path):
    try:
        return open(path).read().splitlines()[1:]
    except OSError:
        return []
def table_all(path):
    try:
        return [line for line in open(path).read().splitlines() if line.strip()]
    except OSError:
        return []
dev = [line.split(":")[0].strip() for line in table("/proc/net/dev")[1:]]
routes = [line.split() for line in table("/proc/net/route") if line.strip()]
v6 = [line.split() for line in table_all("/proc/net/ipv6_route") if line.split()[-1] != "lo"]
try:
    socket.getaddrinfo("deb.debian.org", 443)
    dns = "resolved"
except OSError as exc:
    dns = f"{type(exc).__name__}: {exc}"
ip_link = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
ip_route = subprocess.run(["ip", "route"], capture_output=True, text=True).stdout
print(json.dumps({"interfaces": dev, "routes": routes, "v6_routes": v6, "dns": dns,
                  "ip_link": ip_link, "ip_route": ip_route}))
"""

PRIVILEGES = """
import json, os, subprocess
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
caps = {k: status[k].strip() for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}
try:
    os.setuid(0)
    setuid = "became root"
except OSError as exc:
    setuid = f"{type(exc).__name__}: {exc}"
def run(*argv):
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return [done.returncode, (done.stdout + done.stderr)[-200:]]
    except OSError as exc:
        return [-1, f"{type(exc).__name__}: {exc}"]
os.makedirs("/tmp/mnt", exist_ok=True)
print(json.dumps({
    "uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "caps": caps,
    "no_new_privs": status["NoNewPrivs"].strip(), "seccomp": status["Seccomp"].strip(),
    "setuid": setuid,
    "su": run("su", "-c", "id -u", "root"),
    "mount": run("mount", "-t", "tmpfs", "none", "/tmp/mnt"),
    "unshare": run("unshare", "--user", "--map-root-user", "--mount", "id", "-u"),
    "chroot": run("chroot", "/", "true"),
}))
"""

FILESYSTEM = """
import json, os, stat
result = {}
for path in ("/etc/warden-probe", "/usr/warden-probe", "/opt/venv/warden-probe", "/warden-probe",
             "/run/warden/probe", "/tmp/probe", "/out/probe"):
    try:
        with open(path, "w") as fh:
            fh.write("x")
        result[path] = "written"
    except OSError as exc:
        result[path] = f"{type(exc).__name__}: {exc.strerror}"
mounts = [line.split() for line in open("/proc/self/mountinfo").read().splitlines()]
root = [m for m in mounts if m[4] == "/"][0]
sockets = []
for top in ("/run", "/var/run", "/tmp", "/out", "/var", "/opt", "/srv", "/home", "/root", "/"):
    for folder, dirs, files in os.walk(top):
        if folder == "/" :
            dirs[:] = [d for d in dirs if d not in ("proc", "sys", "dev")]
        for name in files + dirs:
            path = os.path.join(folder, name)
            try:
                if stat.S_ISSOCK(os.lstat(path).st_mode):
                    sockets.append(os.path.realpath(path))
            except OSError:
                pass
print(json.dumps({
    "writes": result, "root_options": root[5],
    "mount_points": sorted({m[4] for m in mounts}),
    "binds": sorted(m[4] for m in mounts if m[3] != "/"),
    "sockets": sorted(set(sockets)),
    "env": sorted(k for k in os.environ if k.startswith(("WARDEN_", "DOCKER"))),
}))
"""

READS = """
import json
from warden.sdk import Client, WardenAPIError
def attempt(dataset, purpose, columns=None):
    try:
        frame = Client().read(dataset, purpose=purpose, columns=columns, limit=5)
        return f"rows {frame.height} columns {frame.columns}"
    except WardenAPIError as exc:
        return f"{exc.status} {exc.error}: {exc.detail}"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
print(json.dumps({
    "allowed": attempt("users", "training", ["region"]),
    "column_outside_grant": attempt("users", "training", ["signup_day"]),
    "dataset_outside_token": attempt("pins", "training", ["pin_id"]),
    "other_purpose": attempt("users", "evaluation", ["region"]),
}))
"""

FORK_BOMB = """
import os, sys, time
children = 0
while True:
    try:
        pid = os.fork()
    except OSError as exc:
        print(f"limit hit after {children} forks: {exc}", flush=True)
        break
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    children += 1
    if children > 100000:
        print("no limit", flush=True)
        break
time.sleep(60)
"""

MEMORY_HOG = """
blocks = []
while True:
    blocks.append(bytearray(16 << 20))
"""

LISTENER = """
import socket, threading, time
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("0.0.0.0", 8000))
server.listen(16)
threading.Thread(target=lambda: [server.accept() for _ in iter(int, 1)], daemon=True).start()
ip = socket.gethostbyname(socket.gethostname())
probe = socket.create_connection((ip, 8000), timeout=2)
probe.close()
print(f"ready {ip}", flush=True)
time.sleep(120)
"""


def last_json(output: str) -> dict:
    import json

    lines = [line for line in output.splitlines() if line.startswith("{")]
    assert lines, f"no JSON line in the sandbox output:\n{output}"
    return dict(json.loads(lines[-1]))
