"""The training stage's commands: `cardiacquan train-seg` and `cardiacquan train-quan`."""
from cardiacquan.training.quan_train import add_train_quan_parser
from cardiacquan.training.seg_train import add_train_seg_parser


def add_parsers(subparsers):
    add_train_seg_parser(subparsers)
    add_train_quan_parser(subparsers)
