"""Build hook: a built wheel carries the top-level `templates/` and `schema.sql` inside the photoq package.

The repository keeps them at its top level. photoq looks for them in the package first (`schema_sql()` in
photoq/db/migrations.py, `templates_dir()` in photoq/web/templating.py) and falls back to the repository, which is what an
editable install (`make run`, `make test`) uses, so nothing is copied for one.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
TOP_LEVEL_DATA = ("schema.sql", "templates")


class BuildPyWithTopLevelData(build_py):
    def run(self):
        super().run()
        if self.editable_mode:
            return
        package = Path(self.build_lib) / "photoq"
        for name in TOP_LEVEL_DATA:
            source, target = HERE / name, package / name
            if target.is_dir():
                shutil.rmtree(target)  # a template deleted from the repository must not linger in build/
            if source.is_dir():
                shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy2(source, target)


setup(cmdclass={"build_py": BuildPyWithTopLevelData})
