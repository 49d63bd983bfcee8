"""The astronaut portrait of scikit-image (public domain) and its 68 face landmarks.

The tests of the portrait animator share it: the landmarks are fixed here, as a 68-point detector
places them, so those tests need no detector. Reading the picture needs scikit-image.
"""

from __future__ import annotations

import numpy as np

# The 68 iBUG points of scikit-image's astronaut portrait (512x512), as a 68-point detector
# places them; fixed here so these tests need no detector.
ASTRONAUT_POINTS = np.array(
    [
        *((179, 104), (179, 116), (180, 127), (181, 139), (185, 151), (191, 160), (200, 169)),
        *((209, 176), (221, 178), (232, 177), (243, 171), (253, 164), (260, 154), (265, 144)),
        *((268, 132), (270, 120), (272, 108)),  # jaw
        *((186, 94), (192, 88), (200, 87), (208, 89), (216, 92)),  # brows
        *((236, 93), (244, 91), (252, 91), (260, 92), (265, 98)),
        *((225, 103), (225, 111), (225, 119), (225, 127)),  # nose
        *((214, 131), (219, 132), (224, 134), (229, 133), (234, 132)),
        *((195, 101), (200, 98), (207, 98), (212, 104), (206, 104), (199, 104)),  # eyes
        *((238, 105), (244, 101), (250, 101), (255, 104), (250, 107), (244, 106)),
        *((201, 140), (209, 139), (218, 139), (223, 141), (229, 140), (237, 140)),  # lips
        *((245, 141), (237, 151), (229, 155), (222, 156), (216, 155), (208, 150)),
        *((204, 141), (217, 143), (223, 144), (229, 143), (243, 142), (229, 150)),
        *((223, 150), (217, 150)),
    ],
    dtype=np.float32,
)
MOUTH = (slice(130, 165), slice(195, 255))  # rows, cols around the lips
EYES = (slice(92, 112), slice(188, 262))


def astronaut_portrait() -> np.ndarray:
    """The 512x512 portrait, BGR uint8 (scikit-image must be installed)."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[:, :, ::-1])
