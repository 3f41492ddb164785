from .mdeq_cls_neck import MDEQClsNeck

__all__ = ['MDEQClsNeck']
