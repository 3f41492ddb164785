"""Generate the small Cityscapes-format street-scene dataset used by the demo and tests, and
optionally short street-scene sequences (camera moving forward and sideways, moving cars) for
the video demo."""
import argparse

from mdeq_mm.datasets import generate_cityscapes_like, generate_cityscapes_sequences


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--out-dir', default='data/mdeq_demo_cityscapes')
    parser.add_argument('--num-train', type=int, default=24)
    parser.add_argument('--num-val', type=int, default=8)
    parser.add_argument('--height', type=int, default=128)
    parser.add_argument('--width', type=int, default=256)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--sequence-dir', default='data/mdeq_demo_sequences',
                        help='where --num-sequences sequences go (Cityscapes layout, val split)')
    parser.add_argument('--num-sequences', type=int, default=0,
                        help='street-scene sequences to write; 0 writes none')
    parser.add_argument('--num-frames', type=int, default=30, help='frames per sequence')
    args = parser.parse_args()
    out = generate_cityscapes_like(args.out_dir, args.num_train, args.num_val,
                                   args.height, args.width, args.seed)
    print(f'wrote {args.num_train} train and {args.num_val} val scenes to {out}')
    if args.num_sequences:
        generate_cityscapes_sequences(args.sequence_dir, args.num_sequences, args.num_frames,
                                      args.height, args.width, args.seed)
        print(f'wrote {args.num_sequences} sequences of {args.num_frames} frames to '
              f'{args.sequence_dir}')


if __name__ == '__main__':
    main()
