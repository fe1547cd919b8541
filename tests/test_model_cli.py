"""`digitrec predict` and `digitrec evaluate` run in-process on the shipped digits model."""

from __future__ import annotations

import json

from imaging import on_paper, png

from digitrec.cli import main


def test_predict_files_text_and_json(tmp_path, mnist_test, capsys):
    images, labels = mnist_test
    good = tmp_path / "digit.png"
    good.write_bytes(png(on_paper(images[0])))
    blank = tmp_path / "blank.png"
    blank.write_bytes(png(on_paper(images[0] * 0)))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"this is not a png")

    assert main(["predict", str(good)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{good}: {labels[0]} (")

    assert main(["predict", "--json", str(good), str(blank), str(broken)]) == 1  # failures -> exit 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["file"] == str(good) and lines[0]["label"] == labels[0] and len(lines[0]["probabilities"]) == 10
    assert lines[1]["error"] == "NoDigitFoundError" and "no digit found" in lines[1]["message"]
    assert lines[2]["error"] == "InvalidImageError"


def test_predict_missing_file_is_reported(tmp_path, capsys):
    assert main(["predict", str(tmp_path / "nope.png")]) == 1
    assert "nope.png" in capsys.readouterr().err


def test_evaluate_writes_report_and_pngs(tmp_path, data_dir, digits_model, capsys):
    assert main(["evaluate", "--model", "digits", "--data-dir", str(data_dir), "--json",
                 "--report-dir", str(tmp_path), "--worst", "16"]) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert report["examples"] == 10000 and report["dataset"] == "mnist"
    assert abs(report["accuracy"] - digits_model.metadata["test_accuracy"]) < 2e-4
    matrix = report["confusion_matrix"]
    assert sum(map(sum, matrix)) == 10000 and report["errors"] == 10000 - sum(matrix[i][i] for i in range(10))
    assert len(report["worst_mistakes"]) == min(16, report["errors"])
    confidences = [m["confidence"] for m in report["worst_mistakes"]]
    assert confidences == sorted(confidences, reverse=True)
    for key in ("confusion_matrix_png", "mistakes_png"):
        with open(report[key], "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_evaluate_text_output(data_dir, capsys, tmp_path):
    assert main(["evaluate", "--datasets", str(data_dir), "--report-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "confusion matrix:" in out and "     9:" in out
