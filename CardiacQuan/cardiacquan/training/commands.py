"""The training stage's commands: `cardiacquan train-seg`, `train-quan` and `export-onnx`."""
from cardiacquan.training.onnx_export import add_export_parser
from cardiacquan.training.quan_train import add_train_quan_parser
from cardiacquan.training.seg_train import add_train_seg_parser


def add_parsers(subparsers):
    add_train_seg_parser(subparsers)
    add_train_quan_parser(subparsers)
    add_export_parser(subparsers)
