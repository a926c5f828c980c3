"""Package discovery only (metadata lives in pyproject.toml).

The repository root is the package itself, so it is mapped to the import name ``facemend`` and
every sub-package below it (archs/gfpgan, ...) is found automatically; tests, benchmarks and
docs are not part of the installed package.
"""

from setuptools import find_packages, setup

SUBPACKAGES = find_packages(where=".", exclude=["tests", "tests.*", "benchmarks", "benchmarks.*", "docs", "build", "dist"])

if __name__ == "__main__":  # setuptools runs this file as __main__; importing it does nothing
    setup(
        package_dir={"facemend": "."},
        packages=["facemend"] + [f"facemend.{p}" for p in SUBPACKAGES],
    )
