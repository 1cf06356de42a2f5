import copy

import pytest

import checks


@pytest.fixture(scope="session")
def _template():
    return checks.load_template()


@pytest.fixture
def template(_template):
    """template.yaml, long-form intrinsics; a fresh copy per test."""
    return copy.deepcopy(_template)


@pytest.fixture(scope="session")
def transformed(_template):
    """The CloudFormation the SAM transform makes of template.yaml."""
    return checks.transform_template(_template)
