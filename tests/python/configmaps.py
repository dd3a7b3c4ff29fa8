"""The Python kubernetes client on podnet's ConfigMaps: create, read,
patch, a watch that sees a change, a key Kubernetes refuses (422), delete.
Prints one line per step for the Rust test that runs it
(tests/tests/kube_configmaps.rs)."""
import sys

from kubernetes import client, config, watch

config.load_kube_config(config_file=sys.argv[1])
v1 = client.CoreV1Api()
made = v1.create_namespaced_config_map(
    "default",
    client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py-cm"), data={"mode": "fast"}),
)
print("CREATED", made.metadata.name, made.data["mode"], flush=True)
listed = v1.list_namespaced_config_map("default")
print("LIST", len(listed.items), flush=True)
v1.patch_namespaced_config_map("py-cm", "default", {"data": {"mode": "slow", "extra": "1"}})
read = v1.read_namespaced_config_map("py-cm", "default")
print("READ", read.data["mode"], read.data["extra"], flush=True)
w = watch.Watch()
for event in w.stream(
    v1.list_namespaced_config_map,
    "default",
    resource_version=listed.metadata.resource_version,
    timeout_seconds=30,
):
    cm = event["object"]
    print("EVENT", event["type"], cm.metadata.name, (cm.data or {}).get("mode"), flush=True)
    if event["type"] == "MODIFIED" and (cm.data or {}).get("mode") == "slow":
        w.stop()
try:
    v1.create_namespaced_config_map(
        "default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="bad"), data={"a/b": "x"})
    )
    print("UNEXPECTED created", flush=True)
except client.exceptions.ApiException as e:
    print("STATUS", e.status, flush=True)
v1.delete_namespaced_config_map("py-cm", "default")
print("DELETED", len(v1.list_namespaced_config_map("default").items), flush=True)
