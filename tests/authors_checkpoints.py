"""State dicts in the layouts of the authors' MDEQ checkpoints (v1: locuslab/mdeq, v2:
locuslab/deq), generated from their module structure: their key names and tensor shapes, with
random values. Channels are tiny to keep the tests fast."""
from collections import OrderedDict

import torch

CHANNELS = (8, 16, 32)
EXPANSION = 2
GROUPS = 4
# Branches 0 and 2 already have 4 * head channels: no shortcut projection there.
HEAD_CHANNELS = (2, 8, 8)
FINAL_CHANNELS = 24
NUM_CLASSES = 5


class AuthorsLayout:
    """Builds state dicts shaped like the authors' MDEQClsNet / MDEQSegNet."""

    def __init__(self, seed=0, channels=CHANNELS, expansion=EXPANSION,
                 head_channels=HEAD_CHANNELS, final_channels=FINAL_CHANNELS,
                 num_classes=NUM_CLASSES):
        self.gen = torch.Generator().manual_seed(seed)
        self.sd = OrderedDict()
        self.channels, self.expansion = channels, expansion
        self.head_channels, self.final_channels = head_channels, final_channels
        self.num_classes = num_classes

    def rand(self, *shape, positive=False):
        t = torch.randn(*shape, generator=self.gen)
        return t.abs() + 0.5 if positive else t

    def conv(self, name, c_out, c_in, k, bias=False):
        self.sd[f'{name}.weight'] = self.rand(c_out, c_in, k, k)
        if bias:
            self.sd[f'{name}.bias'] = self.rand(c_out)

    def wn_conv(self, name, c_out, c_in, k):
        # The authors' WeightNorm(dim=0): magnitude (out, 1, 1, 1), direction like the weight.
        self.sd[f'{name}.weight_g'] = self.rand(c_out, 1, 1, 1, positive=True)
        self.sd[f'{name}.weight_v'] = self.rand(c_out, c_in, k, k)

    def bn(self, name, c, affine=True):
        if affine:
            self.sd[f'{name}.weight'] = self.rand(c)
            self.sd[f'{name}.bias'] = self.rand(c)
        self.sd[f'{name}.running_mean'] = self.rand(c)
        self.sd[f'{name}.running_var'] = self.rand(c, positive=True)
        self.sd[f'{name}.num_batches_tracked'] = torch.tensor(123)

    def gn(self, name, c, affine=True):
        if affine:
            self.sd[f'{name}.weight'] = self.rand(c)
            self.sd[f'{name}.bias'] = self.rand(c)

    def f_layer(self, prefix, wnorm=True, block_affine=True, fuse_affine=True, post_affine=True):
        conv = self.wn_conv if wnorm else self.conv
        for i, c in enumerate(self.channels):
            block = f'{prefix}.branches.{i}.blocks.0'
            conv(f'{block}.conv1', self.expansion * c, c, 3)
            self.gn(f'{block}.gn1', self.expansion * c, block_affine)
            conv(f'{block}.conv2', c, self.expansion * c, 3)
            self.gn(f'{block}.gn2', c, block_affine)
            self.gn(f'{block}.gn3', c, block_affine)
        for i, c_i in enumerate(self.channels):
            for j, c_j in enumerate(self.channels):
                net = f'{prefix}.fuse_layers.{i}.{j}.net'
                if j > i:  # conv1x1 + GN, then nearest upsampling
                    self.conv(f'{net}.conv', c_i, c_j, 1)
                    self.gn(f'{net}.gnorm', c_i, fuse_affine)
                for k in range(i - j):  # stride-2 conv3x3 stages
                    c_out = c_i if k == i - j - 1 else c_j
                    self.conv(f'{net}.{k}.conv', c_out, c_j, 3)
                    self.gn(f'{net}.{k}.gnorm', c_out, fuse_affine)
        for i, c in enumerate(self.channels):
            conv(f'{prefix}.post_fuse_layers.{i}.conv', c, c, 1)
            self.gn(f'{prefix}.post_fuse_layers.{i}.gnorm', c, post_affine)

    def cls_head(self):
        for i, (c, h) in enumerate(zip(self.channels, self.head_channels)):
            p = f'incre_modules.{i}.0'
            self.conv(f'{p}.conv1', h, c, 1)
            self.bn(f'{p}.bn1', h, affine=False)
            self.conv(f'{p}.conv2', h, h, 3)
            self.bn(f'{p}.bn2', h, affine=False)
            self.conv(f'{p}.conv3', 4 * h, h, 1)
            self.bn(f'{p}.bn3', 4 * h, affine=False)
            if c != 4 * h:
                self.conv(f'{p}.downsample.0', 4 * h, c, 1)
                self.bn(f'{p}.downsample.1', 4 * h)
        for i in range(len(self.channels) - 1):
            self.conv(f'downsamp_modules.{i}.0', 4 * self.head_channels[i + 1],
                      4 * self.head_channels[i], 3, bias=True)
            self.bn(f'downsamp_modules.{i}.1', 4 * self.head_channels[i + 1])
        self.conv('final_layer.0', self.final_channels, 4 * self.head_channels[-1], 1, bias=True)
        self.bn('final_layer.1', self.final_channels)
        self.sd['classifier.weight'] = self.rand(self.num_classes, self.final_channels)
        self.sd['classifier.bias'] = self.rand(self.num_classes)

    def seg_head(self):
        total = sum(self.channels)
        self.conv('last_layer.0', total, total, 1, bias=True)
        self.bn('last_layer.1', total)
        self.conv('last_layer.3', self.num_classes, total, 1, bias=True)


def authors_checkpoint(version='v1', task='cls', injection=True, block_affine=True,
                       fuse_affine=True, post_affine=True, **sizes):
    """A state dict in the authors' v1 or v2 layout (v1: GroupNorms always affine); ``sizes``
    override the tiny default channels and classes (see :class:`AuthorsLayout`)."""
    layout = AuthorsLayout(**sizes)
    c0 = layout.channels[0]
    layout.conv('downsample.0', c0, 3, 3)
    layout.bn('downsample.1', c0)
    layout.conv('downsample.3', c0, c0, 3)
    layout.bn('downsample.4', c0)
    if injection:
        layout.conv('stage0.0', c0, c0, 1)
        layout.bn('stage0.1', c0)
    layout.f_layer('fullstage', True, block_affine, fuse_affine, post_affine)
    sd = layout.sd
    if version == 'v1':
        # A copy of f made before weight normalization, and the solver wrapper submodule
        # that shares both (the state dict repeats shared modules).
        layout.f_layer('fullstage_copy', wnorm=False)
        for original, alias in (('fullstage.', 'deq.func.'),
                                ('fullstage_copy.', 'deq.func_copy.')):
            for key in [k for k in sd if k.startswith(original)]:
                sd[alias + key[len(original):]] = sd[key]
    layout.cls_head() if task == 'cls' else layout.seg_head()
    return sd
