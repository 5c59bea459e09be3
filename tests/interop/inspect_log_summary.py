"""Print one Inspect AI log as JSON: each sample's output text, score and error (a child
process, so the test process never imports inspect_ai)."""

from __future__ import annotations

import json
import sys

from inspect_ai.log import read_eval_log

log = read_eval_log(sys.argv[1])
samples = []
for sample in log.samples or []:
    scores = {name: score.value for name, score in (sample.scores or {}).items()}
    samples.append(
        {
            "input": sample.input,
            "output": sample.output.completion if sample.output else None,
            "scores": scores,
            "error": sample.error.message if sample.error else None,
        }
    )
print(json.dumps({"task": log.eval.task, "model": log.eval.model, "samples": samples}))
