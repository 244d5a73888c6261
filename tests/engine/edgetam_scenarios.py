"""EdgeTAM's parity scenarios and seeded-weight calibrations, shared by the test and its child process.

EdgeTAM's predictor (edgetam-dimos 1.0.1) is the SAM 2 video predictor of before Meta's December 2024
revision: it refuses an object added after tracking has started, and a prompt on one object makes that
frame a conditioning frame of every object. The engine follows Meta's current rules for both families,
under which objects are tracked independently. So the scenarios here are those on which both generations
of the predictor agree (every object prompted before tracking starts, corrections of objects that exist),
plus those of PER_OBJECT: an object added mid-video, answered by one reference session per object
(tests/engine/parity.py: run_reference_per_object, checked on Meta's predictor to equal one session).
"""

from __future__ import annotations

from tests.engine.parity import Scenario, Step
from tests.engine.test_tracker_parity import SCENARIOS as SAM2_SCENARIOS
from tests.engine.test_tracker_parity import mask_of  # noqa: F401 -- used by the child process

IMAGE_SIZE = 256  # the exporter's smallest size, as the SAM 2 suite (tests/conftest.py: TEST_SIZE)
SEED = 0
# (mask-logit offset, object-score shift): EdgeTAM's random heads give object scores near -0.2 whatever the
# frame, so one set is shifted to find objects present (masks then cover ~15-25% of the frame) and one is
# left to call them absent (the no-object pointer and empty masks in memory)
CALIBRATIONS = {"present": (-0.06, 0.4), "absent": (-0.06, 0.0)}

_SHARED = ("click", "box", "mask", "negative+refine", "reverse", "forward, correct far back, reverse",
           "below model size, reverse", "two objects")
PER_OBJECT = {"two objects"}  # object 2 is added on frame 3, after object 1 was tracked over frames 0-3
_BEDROOM = next(s for s in SAM2_SCENARIOS if s.name == "bedroom, two objects, absent").steps
SCENARIOS: dict[str, list[Scenario]] = {
    "present": [s for s in SAM2_SCENARIOS if s.name in _SHARED]
    + [Scenario("bedroom, two objects", "bedroom", _BEDROOM)],
    "absent": [Scenario("bedroom, two objects, absent", "bedroom", _BEDROOM),
               Scenario("click, absent", "davis", (Step("points", 0, 1, {"points": [[420.0, 250.0]], "labels": [1]}),
                                                   Step("propagate", args={"max_frame_num_to_track": 6})))],
}
