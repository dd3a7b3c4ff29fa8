"""bench/kube-watch's client: W watchers of the Kubernetes API's Services
(each on its own HTTPS connection, from C client addresses 127.0.0.x so the
per-client cap is not what is measured), then R rounds of one change each
(a Service created through the API); for each round, the time from just
before the create request to each watcher's receipt of the ADDED event.
Prints one line per sample: `latency_ms`, and `READY` once every watcher's
stream is open (the shell script samples the agent's RSS then)."""
import http.client
import json
import os
import random
import ssl
import sys
import threading
import time

ca, token, watchers, rounds, clients = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
ctx = ssl.create_default_context(cafile=ca)
ctx.check_hostname = False
headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
path = "/api/v1/namespaces/default/services"


def conn(i):
    return http.client.HTTPSConnection("127.0.0.1", 6443, context=ctx, source_address=(f"127.0.0.{2 + i % clients}", 0))


c = conn(0)
c.request("GET", path, headers=headers)
rv = json.loads(c.getresponse().read())["metadata"]["resourceVersion"]
seen = {}  # name -> list of receive times
lock = threading.Lock()
opened = threading.Barrier(watchers + 1)


def watch(i):
    w = conn(i)
    w.request("GET", f"{path}?watch=1&resourceVersion={rv}", headers=headers)
    r = w.getresponse()
    assert r.status == 200, r.status
    opened.wait()
    while True:
        line = r.readline()
        if not line:
            return
        t = time.monotonic()
        event = json.loads(line)
        if event["type"] == "ADDED":
            with lock:
                seen.setdefault(event["object"]["metadata"]["name"], []).append(t)


for i in range(watchers):
    threading.Thread(target=watch, args=(i,), daemon=True).start()
opened.wait()
print("READY", flush=True)
sys.stdin.readline()  # the shell has sampled the RSS
for n in range(rounds):
    name = f"bench-{os.getpid()}-{n}"
    body = json.dumps({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                       "spec": {"ports": [{"port": 80}], "selector": {"app": name}}})
    start = time.monotonic()
    c.request("POST", path, body=body, headers={**headers, "Content-Type": "application/json"})
    r = c.getresponse()
    r.read()
    assert r.status == 201, r.status
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with lock:
            if len(seen.get(name, [])) == watchers:
                break
        time.sleep(0.001)
    with lock:
        got = seen.get(name, [])
    if len(got) != watchers:
        print(f"MISSING {watchers - len(got)} of round {n}", flush=True)
    for t in got:
        print(f"{(t - start) * 1000:.3f}", flush=True)
    c.request("DELETE", f"{path}/{name}", headers=headers)
    c.getresponse().read()
    # A random pause: the next change falls anywhere in the agent's cycle.
    time.sleep(0.2 + random.random() * 0.1)
print("DONE", flush=True)
