"""One global batch, however it is split: 2 micro-batches of 1, 2 replicas of 1 on two
logical CPU devices (MirroredStrategy), 2 worker processes of 1 on 127.0.0.1
(MultiWorkerMirroredStrategy), and recomputed blocks all train like one device with
batch 2.

The processes start when the module's first test asks for them and run while the
in-process references train. SGD compares gradients: Adam divides by sqrt(v) + 1e-8, so
the float noise of a gradient that is exactly 0 (the attention keys' bias: softmax ignores
a constant) would become steps of the full learning rate, differently for each summation
order.
"""
import json
import os
import socket
import sys

import pytest

from train_helpers import (ROOT, assert_close, module_workdir, train_main, train_process,
                           weights)

SGD = ("--optimizer", "sgd", "--learning_rate", 0.1, "--seed", 0, "--steps", 2)
MIRRORED = f"""
import sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.argv[0] = {os.path.join(ROOT, "train.py")!r}
sys.path.insert(0, {ROOT!r})
import train
sys.exit(train.main(sys.argv[1:]))
"""


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """One work directory for the module: models/tiny, data.npz, data.txt, and the runs."""
    yield from module_workdir(tmp_path_factory, "distributed")


@pytest.fixture(scope="module")
def processes(work):
    """The two-device and the two-worker runs, started together."""
    argv = [*SGD, "--batch_size", 1, "--dataset", "data.npz"]
    mirrored = train_process(work, *argv, "--run_name", "mirrored", command=[
        sys.executable, "-c", MIRRORED])
    ports = free_ports(2)
    workers = []
    for index in range(2):
        config = {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                  "task": {"type": "worker", "index": index}}
        workers.append(train_process(work, *argv, "--run_name", "workers",
                                     env={"TF_CONFIG": json.dumps(config)}))
    started = {"mirrored": [mirrored], "workers": workers}
    yield started
    for group in started.values():
        for process in group:
            if process.poll() is None:
                process.kill()
            process.communicate()


@pytest.fixture(scope="module")
def reference(work, processes):
    """One device, batch 2."""
    assert train_main(*SGD, "--batch_size", 2, "--run_name", "batch2") == 0
    return weights("checkpoint/batch2")


def finished(group) -> list[str]:
    """Each process's stderr, once all have ended well."""
    outputs = []
    for process in group:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        outputs.append(err)
    return outputs


def test_accumulated_micro_batches_train_like_one_batch(work, reference):
    assert train_main(*SGD, "--batch_size", 1, "--accumulate_gradients", 2,
                      "--run_name", "accumulated") == 0
    assert_close(weights("checkpoint/accumulated"), reference, 1e-5)


def test_recomputed_blocks_train_like_stored_activations(work, reference):
    assert train_main(*SGD, "--batch_size", 2, "--memory_saving_gradients",
                      "--run_name", "recomputed") == 0
    assert_close(weights("checkpoint/recomputed"), reference, 1e-6)


def test_two_replicas_on_two_logical_devices_equal_one_device(work, processes, reference):
    (err,) = finished(processes["mirrored"])
    assert "global batch 2 x 1 on 2 replica(s)" in err
    assert_close(weights("checkpoint/mirrored"), reference, 1e-5)


def test_two_worker_processes_equal_one_device(work, processes, reference):
    chief, other = finished(processes["workers"])
    assert "global batch 2 x 1 on 2 replica(s)" in chief
    assert other == ""  # only the chief reports and writes
    assert_close(weights("checkpoint/workers"), reference, 1e-5)
