import pytest

from segzoo.versions import release


@pytest.mark.parametrize("version, expected", [("2.14.1+cu130", (2, 14)), ("0.24.0rc1", (0, 24)),
                                               ("2.13.0a0+git1234", (2, 13)), ("1.0.31", (1, 0))])
def test_release_is_major_and_minor(version, expected):
    assert release(version) == expected


def test_a_version_without_major_and_minor_is_a_value_error():
    with pytest.raises(ValueError):
        release("nightly")
