"""The networks the book trains, one record each: the single place where a network's facts are written.

The runner's parameter checks, :mod:`xrayutils.models` (weights files, which
networks start from scratch), chapter 03's page (each backbone's input
scaling, the published nine), :mod:`xrayutils.findings` and the ImageNet table
(:func:`xrayutils.published.imagenet_accuracy`) read these records.  A tenth
backbone for chapter 03 is one more :class:`Network` (and, for ``mixed_precision:
auto`` and the stored step times, its measurements: ``benchmarks/README.md``).
No Keras import: the runner checks a chapter's parameters before TensorFlow starts.
"""

from __future__ import annotations

from dataclasses import dataclass

from xrayutils import chapters

#: Where the ImageNet accuracies and sizes below come from: Keras' table of its applications.
KERAS_TABLE = "https://keras.io/api/applications/"


@dataclass(frozen=True)
class Network:
    """One network: how Keras names and builds it, what it accepts, what it scored on ImageNet, who published it.

    ``keras_module`` is the ``keras.applications`` module holding its
    ``preprocess_input`` (a backbone there); a network written on a chapter's
    page instead names that chapter (``page``).  ``imagenet_file`` is the file
    Keras caches its ImageNet no-top weights under (``~/.keras/models``); a
    network without one always starts from random weights.  ``min_image_size``
    is the smallest image side it accepts (Keras refuses less), checked before
    anything trains.  ``family``, ``imagenet_top1`` and ``parameters_millions``
    (with its ImageNet classifier) are Keras' table's (:data:`KERAS_TABLE`), what
    CheXtransfer (Ke et al., CHIL 2021) set against chest X-ray scores.
    ``published_by`` names the studies whose published results include it.
    """

    name: str
    min_image_size: int | None = None
    keras_module: str | None = None
    page: str | None = None
    imagenet_file: str | None = None
    family: str | None = None
    imagenet_top1: float | None = None
    parameters_millions: float | None = None
    published_by: tuple[str, ...] = ()

    @property
    def backbone(self) -> bool:
        """Whether ``keras.applications`` builds it (chapter 03 puts its own head on it)."""
        return self.keras_module is not None


_CORONAHACK = ("coronahack",)

#: Every network, the CoronaHack study's in its order.
NETWORKS = (
    Network("Xception", 71, "xception", imagenet_file="xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
            family="Inception (depthwise separable)", imagenet_top1=0.790, parameters_millions=22.9, published_by=_CORONAHACK),
    Network("VGG16", 32, "vgg16", imagenet_file="vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", family="VGG",
            imagenet_top1=0.713, parameters_millions=138.4, published_by=("class-challenge", "coronahack")),
    Network("VGG19", 32, "vgg19", imagenet_file="vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5", family="VGG",
            imagenet_top1=0.713, parameters_millions=143.7, published_by=_CORONAHACK),
    Network("ResNet101V2", 32, "resnet_v2", imagenet_file="resnet101v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
            family="ResNet", imagenet_top1=0.772, parameters_millions=44.7, published_by=_CORONAHACK),
    Network("InceptionV3", 75, "inception_v3", imagenet_file="inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
            family="Inception", imagenet_top1=0.779, parameters_millions=23.9, published_by=_CORONAHACK),
    Network("InceptionResNetV2", 75, "inception_resnet_v2",
            imagenet_file="inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5", family="Inception-ResNet",
            imagenet_top1=0.803, parameters_millions=55.9, published_by=_CORONAHACK),
    Network("EfficientNetV2S", 32, "efficientnet_v2", imagenet_file="efficientnetv2-s_notop.h5", family="EfficientNetV2",
            imagenet_top1=0.839, parameters_millions=21.6, published_by=_CORONAHACK),
    Network("EfficientNetV2M", 32, "efficientnet_v2", imagenet_file="efficientnetv2-m_notop.h5", family="EfficientNetV2",
            imagenet_top1=0.853, parameters_millions=54.4, published_by=_CORONAHACK),
    Network("ResNet34", 32, page=chapters.CORONAHACK, family="ResNet", published_by=_CORONAHACK),  # the study's self-defined one
    Network("AlexNet", page=chapters.TASK2, published_by=("class-challenge",)),
)

_BY_NAME = {network.name: network for network in NETWORKS}


def network(name: str) -> Network:
    """The record of network ``name``, or an error naming the networks there are."""
    if name not in _BY_NAME:
        raise KeyError(f"no network {name!r}; the networks are {', '.join(_BY_NAME)}")
    return _BY_NAME[name]


def published(study: str) -> tuple[str, ...]:
    """The networks ``study`` published results for (``"coronahack"``: its nine), in :data:`NETWORKS`' order."""
    return tuple(n.name for n in NETWORKS if study in n.published_by)


#: The ``keras.applications`` backbones, by name.
BACKBONES = {n.name: n for n in NETWORKS if n.backbone}
#: What chapter 03 can train (its ``model_names``): every backbone, and the networks written on its page.
CORONAHACK_CHOICES = tuple(n.name for n in NETWORKS if n.backbone or n.page == chapters.CORONAHACK)
#: The networks that always start from random weights, whatever the ``weights`` parameter says: no ImageNet file exists.
FROM_SCRATCH = frozenset(n.name for n in NETWORKS if n.imagenet_file is None)
