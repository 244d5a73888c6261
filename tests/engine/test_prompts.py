from pathlib import Path

import pytest

from engine.errors import InputError
from engine.prompts import Prompt, merge, parse_box, parse_point, parse_prompt_list


def test_parse_point_and_box():
    assert parse_point("10,20") == ((10.0, 20.0), 1)
    assert parse_point(" 1.5, 2 ,0") == ((1.5, 2.0), 0)
    assert parse_box("1,2,3,4") == (1.0, 2.0, 3.0, 4.0)
    for bad in ("10", "a,b", "1,2,3,4", "1,2,5", "nan,1", ""):
        with pytest.raises(InputError):
            parse_point(bad)
    for bad in ("1,2,3", "3,2,1,4", "1,2,3,inf"):
        with pytest.raises(InputError):
            parse_box(bad)


def test_prompt_list_and_merge(tmp_path):
    ps = parse_prompt_list([{"frame": 2, "obj_id": 3, "points": [[1, 2]]}, {"frame": 2, "obj_id": 3, "box": [0, 0, 5, 5]},
                            {"obj_id": 4, "mask": "m.png"}], base=tmp_path)
    assert ps[0].labels == [1] and ps[2].mask == tmp_path / "m.png" and ps[2].frame == 0
    merged = merge(ps)
    assert len(merged) == 2 and merged[0].box == (0, 0, 5, 5) and merged[0].points == [(1.0, 2.0)]
    with pytest.raises(InputError, match="two boxes"):
        merge([Prompt(0, 1, box=(0, 0, 1, 1)), Prompt(0, 1, box=(0, 0, 2, 2))])
    with pytest.raises(InputError, match="cannot be combined"):
        merge([Prompt(0, 1, points=[(1, 1)], labels=[1]), Prompt(0, 1, mask=Path("m.png"))])


@pytest.mark.parametrize("data,message", [
    ([], "non-empty list"),
    ([{"frame": -1, "points": [[1, 2]]}], "expected an integer >= 0"),
    ([{"points": [[1, 2]], "labels": [1, 1]}], "as long as points"),
    ([{"points": [[1, 2]], "labels": [5]}], "1 (positive) or 0"),
    ([{"points": [1, 2]}], "must be [x, y]"),
    ([{"color": 1}], "unknown key 'color'"),
    ([{"frame": 1}], "empty prompt"),
    ([{"obj_id": 1.5, "points": [[1, 2]]}], "expected an integer"),
])
def test_prompt_list_errors(data, message):
    with pytest.raises(InputError) as err:
        parse_prompt_list(data)
    assert message in str(err.value)
