"""Which point of an animated portrait is which: the iBUG 68-point groups a face rig moves.

Indices 0-67 are the landmarks as ``lipstream.avatar.landmarks`` finds them (0-16 jaw, 17-26
brows, 36-47 eyes, 48-59 outer lips, 60-67 inner lips). A rig adds four points on the inner lips,
68-71, half-way between each inner corner and its neighbour: with the landmarks alone the lower
lip would open as a V from the corners. The rig (``face_rig``) moves these groups and the painter
(``face_paint``) draws inside them, so both read them from here.
"""

from __future__ import annotations

import numpy as np

JAW = np.arange(0, 17)
CHIN = 8
BROWS = np.arange(17, 27)
EYE_A, EYE_B = np.arange(36, 42), np.arange(42, 48)
LIDS = ((37, 41), (38, 40), (43, 47), (44, 46))  # (upper, lower) eyelid pairs
OUTER_UPPER = np.arange(49, 54)
OUTER_LOWER = np.arange(55, 60)
INNER_PAIRS = ((61, 67), (62, 66), (63, 65))
CORNERS = (48, 54, 60, 64)
INNER = np.array([60, 61, 62, 63, 64, 65, 66, 67])
EXTRA = ((60, 61), (63, 64), (60, 67), (65, 64))  # 68, 69 upper; 70, 71 lower
OPEN_PAIRS = ((68, 70), (61, 67), (62, 66), (63, 65), (69, 71))  # (upper, lower), left to right
OUTER_FOLLOW = (  # (outer point, the inner point it follows)
    *((49, 68), (50, 61), (51, 62), (52, 63), (53, 69)),
    *((59, 70), (58, 67), (57, 66), (56, 65), (55, 71)),
)
LIPS = np.arange(48, 72)
MOUTH_UPPER = np.array([60, 68, 61, 62, 63, 69, 64])
MOUTH_LOWER = np.array([64, 71, 65, 66, 67, 70, 60])
MOUTH_OUTLINE = np.concatenate([MOUTH_UPPER, MOUTH_LOWER[1:-1]])
FACE_POINTS = 72  # the landmarks and the extra lip points; a rig's rings follow
