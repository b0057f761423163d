"""The 63 datasets of the FoMo-in-Flux benchmark (41 streamed, 22 held out) and 4 extra modules.

One row per dataset: (name, on-disk folder, kind, zero-shot primer). Names are the reference's
dataset handles (``experiment.dataset.name``); folders are what a FiF data root holds
(``ROOT/<FOLDER>/...``, info files ``<FOLDER>_<split>.json``). Kinds: C = classification,
R = retrieval. The reference's datasets.json leaves ImageNet's folder empty; its loader reads
``ROOT/IMAGENET``, so that is the folder here.
"""

from __future__ import annotations

C, R = "classification", "retrieval"

# Streamed: their classes make up the stream; they have train and test splits.
ADAPTATION_ROWS: tuple[tuple[str, str, str, str], ...] = (
    ("ai2diagrams", "AI2DIAGRAMS", C, "A photo of a {}."),
    ("artbench10", "ARTBENCH10", C, "A painting of the artist {}."),
    ("birdsnap", "BIRDSNAP", C, "A photo of the bird {}."),
    ("cifar100", "CIFAR100", C, "A photo of a {}."),
    ("clevr", "CLEVR", C, "A photo of synthetic shapes, with {}."),
    ("clrs", "CLRS", C, "A satellite image of a {}."),
    ("country211", "COUNTRY211", C, "A photo representing the country of {}."),
    ("cub200", "CUB200", C, "A photo of a {}, a type of bird."),
    ("df20mini", "DF20MINI", C, "A photo of the fungi {}."),
    ("dollarstreet", "DOLLARSTREET", C, "A photo of a {}."),
    ("domainnet_clipart", "DOMAINNET_CLIPART", C, "A clipart of a {}."),
    ("domainnet_infograph", "DOMAINNET_INFOGRAPH", C, "An infograph of a {}."),
    ("domainnet_painting", "DOMAINNET_PAINTING", C, "A painting of a {}."),
    ("domainnet_sketch", "DOMAINNET_SKETCH", C, "A sketch of a {}."),
    ("dsprites", "DSPRITES", C, "A black-and-white photo of a {}."),
    ("dtd", "DTD", C, "A photo of a {} texture."),
    ("fgvcaircraft", "FGVCAircraft", C, "A photo of a {}, a type of aircraft."),
    ("flowers102", "FLOWERS102", C, "A photo of a {}, a type of flower."),
    ("fru92", "FRU92", C, "A photo of a {}, a type of fruit."),
    ("fscoco", "FSCOCO", R, "A sketch of a {}"),
    ("inaturalist2021", "iNATURALIST2021", C, "A photo of a {}."),
    ("isicmelanoma", "ISICMELANOMA", C, "A close-up photo of human skin with a mole exhibiting {}."),
    ("mitstates", "MITSTATES", C, "A photo of a {}."),
    ("mtsd", "MTSD", C, 'A centered photo of a "{}" traffic sign.'),
    ("mvtecad_adapt", "MVTECAD_Adapt", C, "A close-up photo of a {}."),
    ("mvtecad_eval", "MVTECAD_Eval", C, "A close-up photo of a {}."),
    ("objectnet", "OBJECTNET", C, "A photo of a {}."),
    ("obsc_animals", "OBSC_ANIMALS", C, "A photo of the obscure animal {}."),
    ("obsc_things", "OBSC_THINGS", C, "A photo of the obscure thing {}."),
    ("openimages", "OPENIMAGES", C, "A photo of a {}."),
    ("patternnet", "PATTERNNET", C, "A satellite image of a {}."),
    ("places365", "PLACES365", C, "A photo of a {}."),
    ("plantvillage", "PLANTVILLAGE", C, "A close-up photo of a {}."),
    ("quilt", "QUILT", C, "A histopathology photo depicting {} pathologies."),
    ("resisc45", "RESISC45", C, "A satellite image of {}."),
    ("shapes3d", "SHAPES3D", C, "A photo of a synthetic {}."),
    ("snake_clef", "SNAKECLEF", C, "A photo of a {} snake."),
    ("sun397", "SUN397", C, "A photo of a {}."),
    ("synthclip106", "SynthCLIP106", C, "A photo of a {}."),
    ("veg200", "VEG200", C, "A photo of a {}, a type of vegetable."),
    ("zappos50k", "ZAPPOS50k", C, "A photo of {} shoes."),
)

# Held out (zero-shot retention): never streamed; only their test split is read.
EVALUATION_ROWS: tuple[tuple[str, str, str, str], ...] = (
    ("caltech101", "CALTECH101", C, "A photo of a {}."),
    ("caltech256", "CALTECH256", C, "A photo of a {}."),
    ("cars196", "CARS196", C, "A photo of a {}, a type of car."),
    ("cifar10", "CIFAR10", C, "A photo of a {}."),
    ("domainnet_quickdraw", "DOMAINNET_QUICKDRAW", C, "A quickdraw of a {}."),
    ("eurosat", "EuroSAT", C, "A centered satellite photo of a {}."),
    ("fashionmnist", "FashionMNIST", C, "A black-and-white photo of a {}, a type of clothing."),
    ("flickr30k", "FLICKR30K", R, "{}"),
    ("food101", "Food101", C, "A photo of a {}, a type of food."),
    ("gtsrb", "GTSRB", C, 'A centered photo of a "{}" traffic sign.'),
    ("imagenet", "IMAGENET", C, "A photo of a {}."),
    ("imagenet_a", "IMAGENET_A", C, "A photo of a {}."),
    ("imagenet_d", "IMAGENET_D", C, "A photo of a {}."),
    ("imagenet_r", "IMAGENET_R", C, "A photo of a {}."),
    ("imagenet_s", "IMAGENET_S", C, "A photo of a {}."),
    ("imagenet_v2", "IMAGENET_V2", C, "A photo of a {}."),
    ("mnist", "MNIST", C, 'A black-and-white photo of the number: "{}".'),
    ("monkeys10", "MONKEYS10", C, "A photo of a {}, a type of monkey."),
    ("mscoco", "MSCOCO", R, "{}"),
    ("oxford_pets", "OXFORDPETS", C, "A photo of a {}, a type of pet."),
    ("stl10", "STL10", C, "A photo of a {}."),
    ("svhn", "SVHN", C, 'A photo of the number: "{}".'),
)

# Loaders the reference ships but leaves out of the default benchmark (usable by name).
EXTRA_ROWS: tuple[tuple[str, str, str, str], ...] = (
    ("medmnist_derma", "MedMNISTderma", C, "A dermatologic photo of {}."),
    ("medmnist_organc", "MedMNISTorganc", C, "A photo of a {} CT scan."),
    ("medmnist_organs", "MedMNISTorgans", C, "A photo of a {} CT scan."),
    ("retinopathy", "RETINOPATHY", C, "A close-up light microscopy picture of {}."),
)
