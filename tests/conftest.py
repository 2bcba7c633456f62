pytest_plugins = ["tests.plugins.registry", "tests.plugins.worker", "tests.plugins.browser"]
