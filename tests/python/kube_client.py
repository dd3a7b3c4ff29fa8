"""The Python kubernetes client against a podnet node (issue #15).

Run by tests/tests/kubectl.rs as: python3 kube_client.py KUBECONFIG IMAGE
in the node's network namespace. Prints one line per step; any failure
raises, so the test sees a non-zero exit and the traceback.
"""

import sys
import time

from kubernetes import client, config
from kubernetes.client.rest import ApiException

kubeconfig, image = sys.argv[1], sys.argv[2]
config.load_kube_config(config_file=kubeconfig)
core = client.CoreV1Api()
apps = client.AppsV1Api()

nodes = core.list_node().items
assert len(nodes) == 1 and nodes[0].status.conditions, nodes
print("nodes", [n.metadata.name for n in nodes])

labels = {"app": "py"}
deployment = client.V1Deployment(
    metadata=client.V1ObjectMeta(name="py"),
    spec=client.V1DeploymentSpec(
        replicas=2,
        selector=client.V1LabelSelector(match_labels=labels),
        template=client.V1PodTemplateSpec(
            metadata=client.V1ObjectMeta(labels=labels),
            spec=client.V1PodSpec(
                containers=[
                    client.V1Container(
                        name="py",
                        image=image,
                        command=["sleep", "3600"],
                        ports=[client.V1ContainerPort(container_port=8080, name="http")],
                    )
                ]
            ),
        ),
    ),
)
made = apps.create_namespaced_deployment("default", deployment)
assert made.metadata.name == "py" and made.spec.replicas == 2, made
print("created", made.metadata.name)

# A second create is a 409 the client raises as ApiException.
try:
    apps.create_namespaced_deployment("default", deployment)
    raise AssertionError("a second create must be refused")
except ApiException as e:
    assert e.status == 409, e
    print("conflict", e.status)

service = client.V1Service(
    metadata=client.V1ObjectMeta(name="py-svc"),
    spec=client.V1ServiceSpec(
        selector=labels, ports=[client.V1ServicePort(port=80, target_port="http")]
    ),
)
svc = core.create_namespaced_service("default", service)
assert svc.spec.cluster_ip, svc
print("service", svc.spec.cluster_ip)

# Running and ready, as the deployment's status and the pods say.
deadline = time.time() + 60
while True:
    pods = core.list_namespaced_pod("default", label_selector="app=py").items
    ready = [
        p for p in pods
        if p.status.phase == "Running" and p.status.container_statuses and p.status.container_statuses[0].ready
    ]
    if len(ready) == 2:
        break
    assert time.time() < deadline, [(p.metadata.name, p.status.phase) for p in pods]
    time.sleep(0.5)
status = apps.read_namespaced_deployment("py", "default").status
assert status.ready_replicas == 2, status
print("ready", sorted(p.metadata.name for p in ready))

endpoints = core.read_namespaced_endpoints("py-svc", "default")
addresses = sorted(a.ip for s in endpoints.subsets for a in s.addresses)
assert addresses == sorted(p.status.pod_ip for p in ready), (addresses, endpoints)
assert endpoints.subsets[0].ports[0].port == 8080, endpoints
print("endpoints", addresses)

# Scale through the scale subresource.
apps.replace_namespaced_deployment_scale(
    "py", "default", client.V1Scale(metadata=client.V1ObjectMeta(name="py"), spec=client.V1ScaleSpec(replicas=1))
)
deadline = time.time() + 60
while len(core.list_namespaced_pod("default", label_selector="app=py").items) != 1:
    assert time.time() < deadline, "scale to 1"
    time.sleep(0.5)
print("scaled", 1)

core.delete_namespaced_service("py-svc", "default")
apps.delete_namespaced_deployment("py", "default")
try:
    apps.read_namespaced_deployment("py", "default")
    raise AssertionError("deleted")
except ApiException as e:
    assert e.status == 404, e
print("deleted")
