"""configs/accelerate/*.yaml load as `accelerate launch` reads them, and describe what their names say."""

from __future__ import annotations

import pytest
from accelerate.commands.config.config_args import ClusterConfig
from accelerate.utils import DistributedType

from mimicsafe.settings import REPO_ROOT

CONFIGS = REPO_ROOT / "configs" / "accelerate"
EXPECTED = {  # name: (distributed type, machines)
    "single-gpu": (DistributedType.NO, 1),
    "multi-gpu": (DistributedType.MULTI_GPU, 1),
    "multi-node": (DistributedType.MULTI_GPU, 2),
}


def test_every_config_is_listed() -> None:
    assert {p.stem for p in CONFIGS.glob("*.yaml")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_loads(name: str) -> None:
    config = ClusterConfig.from_yaml_file(str(CONFIGS / f"{name}.yaml"))
    kind, machines = EXPECTED[name]
    assert config.distributed_type == kind and config.num_machines == machines
    assert config.num_processes >= machines and not config.use_cpu
    assert config.mixed_precision in ("no", "fp16", "bf16")
    if machines > 1:
        assert config.main_process_ip and config.main_process_port
