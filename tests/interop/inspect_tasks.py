"""An Inspect AI task for tests/interop/test_inspect_evals.py: three capitals, scored by
whether the answer includes the target. The dataset is named: tinker-cookbook's
InspectEvaluator builds its metric names from the dataset's name and fails on an unnamed one."""

from __future__ import annotations

from inspect_ai import Task, task
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.scorer import includes
from inspect_ai.solver import generate


@task
def capitals() -> Task:
    samples = [
        Sample(input="What is the capital of France?", target="Paris"),
        Sample(input="What is the capital of Italy?", target="Rome"),
        Sample(input="What is the capital of Japan?", target="Tokyo"),
    ]
    return Task(
        name="capitals",
        dataset=MemoryDataset(samples, name="capitals"),
        solver=generate(),
        scorer=includes(),
    )
