"""The command line as a careless user meets it: one line per mistake, the likely meant value,
the train usage for a train flag, and a --help scoped to the method asked for."""

import pytest

from tssm.cli import build_parser, main

BASE = ["train", "--epochs", "1", "--mlflow", "false", "--checkpoint", "false", "--no-progress"]

MISTAKES = [
    (["--method", "GSADMM"], "unknown method 'GSADMM' (did you mean 'gsadmm'?); choose one of gsadmm, gsam"),
    (["--dataset", "fashion-mnist"], "unknown dataset 'fashion-mnist' (did you mean 'fashion_mnist'?)"),
    (["--model", "mpl"], "unknown model 'mpl' (did you mean 'mlp'?); choose one of mlp, cnn, resnet"),
    (["--schedule", "epochs"], "unknown schedule 'epochs' (did you mean 'epoch'?)"),
    (["--epochs", "three"], "error: tssm train: argument --epochs: invalid int value: 'three'; see 'tssm train --help'"),
    (["--rhoo", "3"], "error: tssm train: unrecognized argument(s) '--rhoo' (did you mean --rho?)"),
]


@pytest.mark.parametrize("args,message", MISTAKES, ids=[" ".join(a) for a, _ in MISTAKES])
def test_a_mistake_is_one_line_with_the_likely_meant_value(args, message, tmp_path, capsys):
    try:
        code = main(BASE + ["--out", str(tmp_path / "run"), *args])
    except SystemExit as e:  # argparse's own errors exit from inside parse_args
        code = e.code
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1, err  # no usage block before or after the error
    assert not (tmp_path / "run").exists()


def _help(method=None):
    parser = build_parser(method)
    return parser._subparsers._group_actions[0].choices["train"].format_help()


def test_train_help_lists_the_common_options_and_only_the_asked_methods_settings():
    plain, gsadmm, adam = _help(), _help("gsadmm"), _help("adam")
    assert "--epochs" in plain and "--rho" not in plain and "--zl-iters" not in plain
    assert "tssm train --method M --help" in " ".join(plain.split())
    assert "--rho" in gsadmm and "--tau2" in gsadmm and "--zl-iters" not in gsadmm  # dlADMM's own stay hidden
    assert "--rho" not in adam and "--epochs" in adam
    # every closed set lists its values
    flat = " ".join(plain.split())
    for values in ("{digits, mnist, fashion_mnist, kmnist, cifar10, cifar100}", "{mlp, cnn, resnet}",
                   "{kaiming, torch, demo}"):
        assert values in flat
    assert len(plain.splitlines()) < len(_help("dladmm").splitlines())


def test_hidden_settings_are_still_accepted(tmp_path, capsys):
    """--help hides another method's settings; the parser still takes them (and the config
    refuses them for a method that does not read them, naming the readers)."""
    code = main(BASE + ["--out", str(tmp_path / "run"), "--method", "adam", "--zl-iters", "3"])
    assert code == 2
    assert "'zl_iters' is a setting of dladmm, not of method 'adam'" in capsys.readouterr().err
