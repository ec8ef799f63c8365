import pytest

from coralord_dagster.errors import InvalidNameError
from coralord_dagster.naming import Ref, SemVer, parse_tag, tag_name, validate_name


@pytest.mark.parametrize("name", ["fashion_mnist", "a", "fashion_mnist/pullover", "x" * 64])
def test_valid_names(name):
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name", ["../x", "Fashion-MNIST", "", "1abc", "a/b/c", "a/", "x" * 65, "a b", "a..b"]
)
def test_invalid_names_are_rejected_with_a_hint(name):
    with pytest.raises(InvalidNameError, match="use lowercase letters"):
        validate_name(name)


def test_hint_suggests_a_valid_name():
    with pytest.raises(InvalidNameError, match="did you mean 'fashion_mnist'"):
        validate_name("Fashion-MNIST")


def test_semver_bumps_and_tags():
    v = SemVer.parse("v1.2.3")
    assert (str(v.bump("major")), str(v.bump("minor")), str(v.bump("patch"))) == ("2.0.0", "1.3.0", "1.2.4")
    assert tag_name("fashion_mnist/pullover", v) == "fashion_mnist/pullover-v1.2.3"
    assert parse_tag("fashion_mnist/pullover-v1.2.3") == ("fashion_mnist/pullover", v)
    assert parse_tag("not-a-tag") is None
    assert SemVer.parse("1.10.0") > SemVer.parse("1.9.9")


def test_refs():
    assert Ref.parse("fmnist") == Ref("fmnist", "latest")
    assert Ref.parse("fmnist@v1.0.0").semver == SemVer(1, 0, 0)
    assert Ref.parse("fmnist@deadbeef").semver is None
    for bad in ("fmnist@v1", "fmnist@abc", "Fmnist@latest"):
        with pytest.raises(InvalidNameError):
            Ref.parse(bad)
