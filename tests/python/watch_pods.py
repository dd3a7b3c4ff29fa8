"""The Python kubernetes client against podnet's API: a list, then a watch
from the list's resourceVersion until pod `py1` runs, then a watch from a
resourceVersion podnet never gave (410); the deployments and ReplicaSets
through the typed apps client. Prints one line per step for the
Rust test that runs it (tests/tests/kubectl.rs)."""
import sys

from kubernetes import client, config, watch

config.load_kube_config(config_file=sys.argv[1])
v1 = client.CoreV1Api()
pods = v1.list_namespaced_pod("default")
print("LIST", pods.metadata.resource_version, len(pods.items), flush=True)
w = watch.Watch()
for event in w.stream(
    v1.list_namespaced_pod,
    "default",
    resource_version=pods.metadata.resource_version,
    timeout_seconds=60,
):
    pod = event["object"]
    print("EVENT", event["type"], pod.metadata.name, pod.status.phase, flush=True)
    if pod.metadata.name == "py1" and pod.status.phase == "Running":
        w.stop()
try:
    for event in watch.Watch().stream(
        v1.list_namespaced_pod, "default", resource_version="99999999", timeout_seconds=5
    ):
        print("UNEXPECTED", event["type"], flush=True)
except client.exceptions.ApiException as e:
    print("STATUS", e.status, flush=True)
apps = client.AppsV1Api()
for d in apps.list_namespaced_deployment("default").items:
    print("DEPLOYMENT", d.metadata.name, d.metadata.generation, d.status.replicas, flush=True)
for rs in apps.list_namespaced_replica_set("default").items:
    print("REPLICASET", rs.metadata.owner_references[0].name, rs.spec.replicas, flush=True)
