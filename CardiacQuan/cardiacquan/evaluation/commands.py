"""The evaluation stage's commands: `cardiacquan evaluate-seg` and `cardiacquan evaluate`."""
from cardiacquan.evaluation.quan import add_evaluate_parser
from cardiacquan.evaluation.seg import add_evaluate_seg_parser


def add_parsers(subparsers):
    add_evaluate_seg_parser(subparsers)
    add_evaluate_parser(subparsers)
