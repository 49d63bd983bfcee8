"""A Pipecat voice agent with a lipstream face, over Pipecat's own WebRTC transport.

Run lipstream (`make run`), then, with OPENAI_API_KEY set and
`pip install 'lipstream[pipecat]' 'pipecat-ai[runner,webrtc,openai]'`:

    python examples/pipecat_bot.py        # open the page the runner prints

The avatar sits after the TTS: it holds the voice back by lipstream's pipeline latency and
sends it out with the composited frames, in sync.
"""

import os

from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
from pipecat.runner.types import RunnerArguments
from pipecat.runner.utils import create_transport
from pipecat.services.openai.llm import OpenAILLMService
from pipecat.services.openai.stt import OpenAISTTService
from pipecat.services.openai.tts import OpenAITTSService
from pipecat.transports.base_transport import TransportParams
from pipecat.workers.runner import WorkerRunner

from lipstream.integrations.pipecat import LipstreamVideoService

LIPSTREAM = os.environ.get("LIPSTREAM_URL", "ws://127.0.0.1:8080/")


async def bot(runner_args: RunnerArguments) -> None:
    video = {"video_out_enabled": True, "video_out_framerate": 25}
    size = {"video_out_width": 512, "video_out_height": 512}  # the demo avatar's video
    transport = await create_transport(
        runner_args,
        {
            "webrtc": lambda: TransportParams(
                audio_in_enabled=True, audio_out_enabled=True, **video, **size
            )
        },
    )
    key = os.environ["OPENAI_API_KEY"]
    context = LLMContext([{"role": "system", "content": "You are a friendly, brief assistant."}])
    aggregators = LLMContextAggregatorPair(context)
    pipeline = Pipeline(
        [
            transport.input(),
            OpenAISTTService(api_key=key),
            aggregators.user(),
            OpenAILLMService(api_key=key),
            OpenAITTSService(api_key=key),
            LipstreamVideoService(url=LIPSTREAM, model="demo"),  # the face
            transport.output(),
            aggregators.assistant(),
        ]
    )
    worker = PipelineWorker(pipeline, params=PipelineParams(audio_out_sample_rate=24000))
    runner = WorkerRunner(handle_sigint=runner_args.handle_sigint)
    await runner.add_workers(worker)
    await runner.run()


if __name__ == "__main__":
    from pipecat.runner.run import main

    main()
