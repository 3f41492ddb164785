"""Train only the MDEQ's learned initializer, on the solver's trajectory, in a stock Runner."""
from typing import Any, Dict, Optional, Tuple

from mmengine.hooks.hook import DATA_BATCH
from mmengine.registry import HOOKS
from torch import nn

from .mdeq_hook import MDEQHook, forward_mode, unwrap_model


@HOOKS.register_module()
class InitializerTrainingHook(MDEQHook):
    """Freeze the trained model and fit the backbone's initializer to its equilibria.

    Before training every parameter but the initializer's stops needing gradients; at every
    training iteration the model is put in eval mode (BatchNorm statistics and dropout stay as
    trained) and the initializer's ``fitting`` flag is set, so the backbone solves each image
    from zeros for its target ``z*`` and the initializer's losses (``loss_init_dist``,
    ``loss_init_res``, see :class:`~mdeq_mm.models.layers.MDEQInitializer`) replace the task's
    losses in the loss dict; the task's other outputs (e.g. its accuracy on ``z*``) are still
    logged, and the target solve's mean steps as ``train/init_target_steps``. The flag is
    cleared after each iteration and before validation and testing, which therefore start
    from the learned state. Load the trained model with ``load_from``: the initializer's weights are missing
    from it and start at zero (the cold start).

    Example:
        >>> model = dict(backbone=dict(initializer=dict(type='MDEQInitializer')))
        >>> custom_hooks = [dict(type='InitializerTrainingHook')]
    """

    priority = 'NORMAL'

    def before_train(self, runner) -> None:
        """Check the backbone has an initializer, freeze everything else (the weights are
        loaded by now) and hook the loss dict. Testing alone does not need one."""
        if self.backbone.initializer is None:
            raise ValueError('InitializerTrainingHook needs an MDEQ backbone with an '
                             "initializer, e.g. initializer=dict(type='MDEQInitializer')")
        self.hook_model_forward(runner, self._replace_losses)
        model = unwrap_model(runner.model)
        for param in model.parameters():
            param.requires_grad_(False)
        for param in self.backbone.initializer.parameters():
            param.requires_grad_(True)

    def before_train_iter(self,
                          runner,
                          batch_idx: int,
                          data_batch: DATA_BATCH = None) -> None:
        unwrap_model(runner.model).eval()
        self.backbone.initializer.train()
        self.backbone.initializer.fitting = True

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: DATA_BATCH = None,
                         outputs: Optional[dict] = None) -> None:
        self.backbone.initializer.fitting = False
        stats = self.backbone.initializer.last_target_stats
        if stats is not None:
            runner.message_hub.update_scalar('train/init_target_steps',
                                             float(stats.steps.float().mean()))

    def before_val(self, runner) -> None:
        self._stop_fitting()

    def before_test(self, runner) -> None:
        self._stop_fitting()

    def _stop_fitting(self) -> None:
        if self.backbone.initializer is not None:
            self.backbone.initializer.fitting = False

    def _replace_losses(self, module: nn.Module, args: Tuple[Any, ...], kwargs: Dict[str, Any],
                        output: Any) -> Optional[Dict[str, Any]]:
        """Forward hook: the loss dict with the initializer's losses instead of the task's."""
        initializer = self.backbone.initializer
        if (initializer is None or not initializer.fitting or not isinstance(output, dict)
                or forward_mode(args, kwargs) != 'loss'):
            return None
        kept = {k: v for k, v in output.items() if 'loss' not in k}
        return {**kept, **initializer.last_losses}
