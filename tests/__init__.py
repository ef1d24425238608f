import pytest

# Helper modules that test modules import and that are also pytest plugins:
# rewritten on first import, whoever imports them first.
pytest.register_assert_rewrite("tests.browser", "tests.leaks")
