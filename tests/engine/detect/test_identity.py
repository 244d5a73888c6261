"""The identity policy on synthetic masks and boxes (no model): admission, matching, lost, re-acquired,
expired, the cap, correction and a person's removal."""

from __future__ import annotations

import numpy as np
import pytest

from engine.detect.base import Detection
from engine.detect.identity import IdentityPolicy, ObjectView
from engine.detect.settings import IdentitySettings

H, W = 120, 160


def mask(box=None) -> np.ndarray:
    m = np.zeros((H, W), bool)
    if box is not None:
        x0, y0, x1, y1 = box
        m[y0:y1, x0:x1] = True
    return m


def det(box, label="person", score=0.9, class_id=0) -> Detection:
    return Detection(tuple(float(v) for v in box), score, class_id, label)


def policy(**kw) -> IdentityPolicy:
    return IdentityPolicy(IdentitySettings(**kw))


def test_a_detection_no_object_covers_becomes_a_new_object_with_a_box_prompt():
    p = policy()
    d = p.observe(0, 0.0, {}, [det((10, 10, 40, 60)), det((90, 20, 130, 80))])
    assert [(x.obj_id, x.reason) for x in d.prompts] == [(1, "entered"), (2, "entered")]
    assert [e.kind for e in d.events] == ["entered", "entered"] and d.events[0].label == "person"
    # tracked on the next frame with masks where the detections are: matched, nothing new
    views = {1: ObjectView(mask((11, 10, 41, 60)), 2.0), 2: ObjectView(mask((90, 21, 130, 80)), 2.0)}
    d = p.observe(1, 0.1, views, [det((12, 10, 42, 60)), det((91, 20, 131, 80))])
    assert d.prompts == [] and d.events == []
    assert p.objects[1].det_box == (12.0, 10.0, 42.0, 60.0)


def test_matching_is_one_to_one_and_follows_the_masks_when_objects_swap_order():
    p = policy()
    p.observe(0, 0.0, {}, [det((10, 10, 40, 60)), det((90, 20, 130, 80))])
    # the masks say object 1 is now on the right and object 2 on the left (they crossed)
    views = {1: ObjectView(mask((92, 20, 132, 80)), 1.0), 2: ObjectView(mask((12, 10, 42, 60)), 1.0)}
    p.observe(1, 0.1, views, [det((12, 10, 42, 60)), det((92, 20, 132, 80))])
    assert p.objects[1].det_box[0] == 92 and p.objects[2].det_box[0] == 12


def test_a_second_detection_inside_a_matched_object_is_not_a_new_object():
    p = policy()
    p.observe(0, 0.0, {}, [det((10, 10, 60, 100))])
    views = {1: ObjectView(mask((10, 10, 60, 100)), 1.0)}
    d = p.observe(1, 0.1, views, [det((10, 10, 60, 100)), det((12, 12, 58, 90), score=0.6)])
    assert d.prompts == [] and len(p.objects) == 1


def test_unwanted_classes_and_a_person_removal_are_not_admitted():
    p = IdentityPolicy(IdentitySettings(removed_block_s=10.0), classes=("person",))
    d = p.observe(0, 0.0, {}, [det((10, 10, 40, 60), label="car", class_id=2), det((90, 20, 130, 80))])
    assert [x.obj_id for x in d.prompts] == [1] and p.objects[1].label == "person"
    event = p.person_removed(1, now=1.0, frame_id=10)
    assert event.kind == "removed" and event.by == "person"
    d = p.observe(11, 2.0, {}, [det((92, 22, 128, 78))])  # the same place, within removed_block_s
    assert d.prompts == [] and p.objects == {}
    d = p.observe(12, 12.0, {}, [det((92, 22, 128, 78))])  # after it
    assert [x.obj_id for x in d.prompts] == [2]  # a new id: 1 is never given again


def test_lost_after_the_configured_time_then_reacquired_by_a_detection_under_its_old_id():
    p = policy(lost_after_s=1.0, expire_after_s=10.0)
    p.observe(0, 0.0, {}, [det((100, 20, 140, 80))])
    seen = {1: ObjectView(mask((100, 20, 140, 80)), 1.0)}
    p.observe(1, 0.1, seen, None)
    gone = {1: ObjectView(mask(), -5.0)}
    assert p.observe(2, 0.5, gone, None).events == []
    d = p.observe(3, 1.6, gone, None)
    assert [e.kind for e in d.events] == ["lost"] and p.objects[1].state == "lost"
    # a detection of the same class near where it was last seen: its old id, with a box prompt
    d = p.observe(4, 3.0, gone, [det((108, 24, 146, 84))])
    assert [(x.obj_id, x.reason) for x in d.prompts] == [(1, "reacquired")]
    assert [e.kind for e in d.events] == ["reacquired"] and p.objects[1].state == "tracking"


def test_a_detection_far_from_a_lost_object_is_a_new_object():
    p = policy(lost_after_s=0.5)
    p.observe(0, 0.0, {}, [det((100, 20, 140, 80))])
    p.observe(1, 0.1, {1: ObjectView(mask((100, 20, 140, 80)), 1.0)}, None)
    p.observe(2, 1.0, {1: ObjectView(mask(), -1.0)}, None)
    d = p.observe(3, 1.1, {1: ObjectView(mask(), -1.0)}, [det((0, 0, 20, 30))])
    assert [(x.obj_id, x.reason) for x in d.prompts] == [(2, "entered")]


def test_sam2_finding_a_lost_object_itself_is_reacquired_by_memory():
    p = policy(lost_after_s=0.5)
    p.observe(0, 0.0, {}, [det((100, 20, 140, 80))])
    p.observe(1, 1.0, {1: ObjectView(mask(), -1.0)}, None)
    p.observe(2, 1.6, {1: ObjectView(mask(), -1.0)}, None)
    d = p.observe(3, 2.0, {1: ObjectView(mask((60, 20, 100, 80)), 3.0)}, None)
    assert [(e.kind, e.by) for e in d.events] == [("reacquired", "memory")] and d.prompts == []


def test_expired_after_the_longer_time_and_removed():
    p = policy(lost_after_s=1.0, expire_after_s=5.0)
    p.observe(0, 0.0, {}, [det((100, 20, 140, 80))])
    gone = {1: ObjectView(mask(), -1.0)}
    p.observe(1, 0.0, gone, None)
    p.observe(2, 1.0, gone, None)  # lost
    assert p.observe(3, 5.5, gone, None).remove == []
    d = p.observe(4, 6.1, gone, None)
    assert d.remove == [1] and [e.kind for e in d.events] == ["expired"] and 1 not in p.objects


def test_a_flood_of_detections_cannot_pass_the_cap_and_the_excess_is_counted():
    p = policy(max_objects=3)
    boxes = [(x, 10, x + 8, 30) for x in range(0, 150, 10)]
    d = p.observe(0, 0.0, {}, [det(b) for b in boxes])
    assert len(d.prompts) == 3 and d.over_cap == len(boxes) - 3 and p.over_cap == len(boxes) - 3


def test_correction_re_prompts_a_matched_object_whose_mask_disagrees_only_when_on():
    for correct in (False, True):
        p = policy(correct=correct, correct_iou=0.5)
        p.observe(0, 0.0, {}, [det((10, 10, 50, 90))])
        # the mask drifted to a sliver of the object; the detection still overlaps what the object was
        views = {1: ObjectView(mask((10, 10, 20, 30)), 1.0)}
        d = p.observe(1, 0.1, views, [det((11, 10, 51, 90))])
        assert [(x.obj_id, x.reason) for x in d.prompts] == ([(1, "corrected")] if correct else [])


def test_a_person_s_object_joins_the_policy_and_ids_stay_above_it():
    p = policy()
    d = p.observe(0, 0.0, {7: ObjectView(mask((10, 10, 40, 60)), 1.0)}, [det((100, 10, 130, 60))])
    assert p.objects[7].origin == "person" and [x.obj_id for x in d.prompts] == [8]


@pytest.mark.parametrize("bad", [{"match_iou": 0}, {"expire_after_s": 0.5}, {"max_objects": 0}])
def test_identity_keys_are_checked(bad):
    from engine.detect.settings import parse_detector
    from engine.errors import ConfigError

    with pytest.raises(ConfigError, match="detector.identity"):
        parse_detector({"kind": "motion", "identity": {"lost_after_s": 1.0, **bad}}, None, "t")


def flood() -> np.ndarray:
    """A mask over the whole frame: what seeded weights give, saying nothing of where an object is."""
    return np.ones((H, W), bool)


def test_an_object_entering_at_the_edge_is_followed_by_its_leading_edge_when_masks_say_nothing():
    p = policy()
    hw = (H, W)
    p.observe(0, 0.0, {}, [det((0, 10, 6, 60))], hw)  # a sliver at the left edge
    views = {1: ObjectView(flood(), 1.0)}
    p.observe(4, 0.4, views, [det((0, 10, 38, 60))], hw)  # its leading edge moved 32 px: 80 px/s
    assert p.objects[1].velocity == pytest.approx((80.0, 0.0))
    d = p.observe(8, 0.8, views, [det((32, 10, 70, 60))], hw)  # no overlap with the last box: the guess has it
    assert d.prompts == [] and p.objects[1].det_box[0] == 32


def test_an_object_that_turned_back_is_found_near_where_the_detector_saw_it_last():
    p = policy()
    hw = (H, W)
    p.observe(0, 0.0, {}, [det((100, 10, 136, 60))], hw)
    views = {1: ObjectView(flood(), 1.0)}
    p.observe(4, 0.4, views, [det((132, 10, 160, 60))], hw)  # leaving at the right edge, 80 px/s
    p.observe(8, 0.8, views, [], hw)  # gone
    d = p.observe(12, 1.6, views, [det((134, 10, 160, 60))], hw)  # back at the edge it left by
    assert d.prompts == [] and p.objects[1].velocity is None  # matched; its old motion forgotten
    d = p.observe(16, 2.0, views, [det((102, 10, 140, 60))], hw)  # moving left now, clear of the last box
    assert d.prompts == [] and p.objects[1].det_box[0] == 102 and list(p.objects) == [1]
