"""A package for speed runs at any generator width: a shipped package's avatar, a random network.

``bench e2e --width 1.0`` serves the full-width SyncTalk_2D network (the one users' own
checkpoints have) without a trained full-width package: the avatar's frames, video, speech and
audio encoder are those of the source package (linked, not copied), the generator is a random
network of the width asked for, exported to fp32 and int8 ONNX exactly as a trained one would be
(int8 calibrated on the avatar's own frames and speech). Speed does not depend on the weights;
its mouths mean nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

from lipstream.errors import InvalidInput, PackageError
from lipstream.model.package import MANIFEST, load_package

SPEED_ONLY = "speed-only"


def speed_package(source: str | Path, width: float, root: str | Path) -> Path:
    """Write a package named ``<source>_w<width>`` under ``root`` and return its folder."""
    import torch

    from lipstream.audio.features import offline_features
    from lipstream.audio.files import read_audio_file
    from lipstream.bench import random_generator_state
    from lipstream.model.export import export_generator, export_generator_network
    from lipstream.model.network import Generator, GeneratorConfig
    from lipstream.model.quantize import quantize_generator
    from lipstream.model.runtime import OnnxAudioEncoder

    if not 0.0 < width <= 2.0:
        raise InvalidInput(f"width must be in (0, 2], got {width}")
    pkg = load_package(source)
    encoder_path = pkg.weights("onnx.audio_encoder")
    if encoder_path is None or pkg.speech_path is None:
        raise PackageError(f"package {pkg.name} ships no ONNX audio encoder or speech to reuse")
    name = f"{pkg.name}_w{width:g}".replace(".", "_")
    folder = Path(root) / name
    folder.mkdir(parents=True)
    for item in pkg.path.iterdir():
        if item.name != MANIFEST and not item.name.startswith("generator_"):
            (folder / item.name).symlink_to(item.resolve())

    generator = Generator(GeneratorConfig(width=width))
    generator.load_state_dict(random_generator_state(width))
    generator.eval()
    fp32 = export_generator(generator, folder / "generator_fp32.onnx")
    network = export_generator_network(generator, folder / "network.onnx")
    speech = read_audio_file(pkg.speech_path, 16000)
    windows = offline_features(speech, OnnxAudioEncoder(encoder_path, "cpu").encode, pkg.layout)
    crops = pkg.load_inner_crops()
    with torch.inference_mode():
        int8 = quantize_generator(network, folder / "generator_int8.onnx", crops, windows[:64])
    network.unlink()

    manifest = json.loads((pkg.path / MANIFEST).read_text())
    manifest["name"] = name
    manifest["generator"] = {**manifest["generator"], "width": width}
    manifest["weights"] = {
        "onnx": {
            "generator_fp32": fp32.name,
            "generator_int8": int8.name,
            "audio_encoder": encoder_path.name,
        }
    }
    manifest["metrics"] = {}
    manifest["source"] = {SPEED_ONLY: True, "avatar_from": pkg.name}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))
    load_package(folder)  # it must load like any other
    return folder
