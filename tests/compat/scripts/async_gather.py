"""asyncio: 500 samples gathered at once, in the official SDK's 0.38 style.

Usage: python async_gather.py BASE_URL [N]; prints a JSON report on stdout.
"""

import asyncio
import json
import sys

import tinker
from tinker import types


async def main() -> None:
    url, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 500
    service = tinker.ServiceClient(base_url=url)
    sampler = await service.create_sampling_client(base_model="local/tiny")
    prompt = types.ModelInput.from_ints([1, 2, 3, 4])
    params = types.SamplingParams(max_tokens=3, temperature=1.0)
    results = await asyncio.gather(*(sampler.sample(prompt, 1, params) for _ in range(n)))
    scored = await sampler.compute_logprobs(prompt)
    await service.close("success")
    print(
        json.dumps(
            {
                "sdk": tinker.__name__,
                "samples": len(results),
                "tokens": sum(len(r.sequences[0].tokens) for r in results),
                "logprobs": len(scored),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
