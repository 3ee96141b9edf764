"""Multi-node scenario run by tests/pipeline/test_multinode.py in its own process (its own Ray cluster).

A head without GPUs plus three worker nodes declaring one logical GPU each; a run with gpus_per_actor=1 and two
actors; once the first painting commits, the worker node hosting a live tuning actor is removed. Prints one JSON
line (prefixed RESULT) describing what happened; the test asserts on it and on the output folder.
"""
from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path


def main(out: str, manifest: str) -> None:
    import ray
    from ray._private import state
    from ray.cluster_utils import Cluster

    from artmator.pipeline.job import RunConfig, run
    from tests.pipeline.ray_fixtures import tiny_settings

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    gpu_nodes = {}
    for _ in range(3):
        node = cluster.add_node(num_cpus=1, num_gpus=1)
        gpu_nodes[node.node_id] = node
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    events: dict = {"gpu_nodes": sorted(gpu_nodes), "head": cluster.head_node.node_id, "removed": None}

    def tuning_actors() -> list[dict]:
        return [a for a in state.actors().values() if "TuneActor" in (a.get("ActorClassName") or "")]

    def remove_a_busy_node() -> None:
        deadline = time.time() + 240
        while time.time() < deadline and not list(Path(out).glob("commits/*/*.json")):
            time.sleep(0.05)
        events["committed_before_removal"] = len(list(Path(out).glob("commits/*/*.json")))
        alive = [a["Address"]["NodeID"] for a in tuning_actors() if a.get("State") == "ALIVE"]
        victims = [n for n in alive if n in gpu_nodes]
        if victims:
            events["removed"] = victims[0]
            cluster.remove_node(gpu_nodes[victims[0]], allow_graceful=False)
            events["removed_at"] = time.time()

    remover = threading.Thread(target=remove_a_busy_node, daemon=True)
    remover.start()
    config = RunConfig(manifest_uri=manifest, out_uri=out, settings=tiny_settings(stage1=12, stage2=8),
                       actors=2, gpus_per_actor=1.0, cpus_per_actor=0.5, run_id="multinode")
    summary = run(config)
    events["finished_at"] = time.time()
    remover.join(timeout=10)
    events["actor_nodes"] = sorted({a["Address"]["NodeID"] for a in tuning_actors()})
    events["actor_states"] = sorted(a.get("State") for a in tuning_actors())
    events["summary"] = {"done": summary.done, "failed": summary.failed, "total": summary.total,
                         "report": summary.report_path}
    print("RESULT " + json.dumps(events), flush=True)
    ray.shutdown()
    cluster.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
