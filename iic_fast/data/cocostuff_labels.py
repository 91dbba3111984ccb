"""COCO-Stuff label tables: the 182 fine names (annotation PNG values 0..181; 255 = unlabelled) and
the fine -> 27 coarse mapping of the original (things 0..11, stuff 12..26, same order as its
``_sorted_coarse_names``), built from the official COCO / COCO-Stuff super-categories."""
from __future__ import annotations

import numpy as np

#: Fine class names, index = PNG value (COCO-Stuff labels.txt id minus 1).
FINE_NAMES: tuple[str, ...] = tuple(
    """person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant
    street_sign stop_sign parking_meter bench bird cat dog horse sheep cow elephant bear zebra giraffe
    hat backpack umbrella shoe eye_glasses handbag tie suitcase frisbee skis snowboard sports_ball kite
    baseball_bat baseball_glove skateboard surfboard tennis_racket bottle plate wine_glass cup fork
    knife spoon bowl banana apple sandwich orange broccoli carrot hot_dog pizza donut cake chair couch
    potted_plant bed mirror dining_table window desk toilet door tv laptop mouse remote keyboard
    cell_phone microwave oven toaster sink refrigerator blender book clock vase scissors teddy_bear
    hair_drier toothbrush hair_brush
    banner blanket branch bridge building-other bush cabinet cage cardboard carpet ceiling-other
    ceiling-tile cloth clothes clouds counter cupboard curtain desk-stuff dirt door-stuff fence
    floor-marble floor-other floor-stone floor-tile floor-wood flower fog food-other fruit
    furniture-other grass gravel ground-other hill house leaves light mat metal mirror-stuff moss
    mountain mud napkin net paper pavement pillow plant-other plastic platform playingfield railing
    railroad river road rock roof rug salad sand sea shelf sky-other skyscraper snow solid-other
    stairs stone straw structural-other table tent textile-other towel tree vegetable wall-brick
    wall-concrete wall-other wall-panel wall-stone wall-tile wall-wood water-other waterdrops
    window-blind window-other wood""".split()
)
assert len(FINE_NAMES) == 182

#: Coarse categories in the original's index order.
COARSE_NAMES: tuple[str, ...] = (
    "electronic", "appliance", "food", "furniture", "indoor", "kitchen", "accessory", "animal",
    "outdoor", "person", "sports", "vehicle",  # things 0..11
    "ceiling", "floor", "food-stuff", "furniture-stuff", "rawmaterial", "textile", "wall", "window",
    "building", "ground", "plant", "sky", "solid", "structural", "water",  # stuff 12..26
)

_GROUPS: dict[str, str] = {
    "electronic": "tv laptop mouse remote keyboard cell_phone",
    "appliance": "microwave oven toaster sink refrigerator blender",
    "food": "banana apple sandwich orange broccoli carrot hot_dog pizza donut cake",
    "furniture": "chair couch potted_plant bed mirror dining_table window desk toilet door",
    "indoor": "book clock vase scissors teddy_bear hair_drier toothbrush hair_brush",
    "kitchen": "bottle plate wine_glass cup fork knife spoon bowl",
    "accessory": "hat backpack umbrella shoe eye_glasses handbag tie suitcase",
    "animal": "bird cat dog horse sheep cow elephant bear zebra giraffe",
    "outdoor": "traffic_light fire_hydrant street_sign stop_sign parking_meter bench",
    "person": "person",
    "sports": "frisbee skis snowboard sports_ball kite baseball_bat baseball_glove skateboard "
    "surfboard tennis_racket",
    "vehicle": "bicycle car motorcycle airplane bus train truck boat",
    "ceiling": "ceiling-other ceiling-tile",
    "floor": "carpet floor-marble floor-other floor-stone floor-tile floor-wood",
    "food-stuff": "food-other fruit salad vegetable",
    "furniture-stuff": "cabinet counter cupboard desk-stuff door-stuff furniture-other light "
    "mirror-stuff shelf stairs table",
    "rawmaterial": "cardboard metal paper plastic",
    "textile": "banner blanket cloth clothes curtain mat napkin pillow rug textile-other towel",
    "wall": "wall-brick wall-concrete wall-other wall-panel wall-stone wall-tile wall-wood",
    "window": "window-blind window-other",
    "building": "bridge building-other house roof skyscraper tent",
    "ground": "dirt gravel ground-other mud pavement platform playingfield railroad road sand snow",
    "plant": "branch bush flower grass leaves moss plant-other straw tree",
    "sky": "clouds sky-other",
    "solid": "hill mountain rock stone solid-other wood",
    "structural": "cage fence net railing structural-other",
    "water": "fog river sea water-other waterdrops",
}


def _build_fine_to_coarse() -> np.ndarray:
    table = np.full(182, -1, dtype=np.int64)
    index = {n: i for i, n in enumerate(FINE_NAMES)}
    for c, cname in enumerate(COARSE_NAMES):
        for n in _GROUPS[cname].split():
            table[index[n]] = c
    assert (table >= 0).all()
    return table


#: FINE_TO_COARSE[fine] -> coarse index 0..26 (int64, shape (182,)).
FINE_TO_COARSE: np.ndarray = _build_fine_to_coarse()

#: COCO-Stuff-3 classes (original order): sky 0, plant 1, ground 2.
STUFF3_NAMES = ("sky", "plant", "ground")
#: COCO-Stuff-15 classes: coarse 12..26 shifted to 0..14.
STUFF15_NAMES = COARSE_NAMES[12:]
#: Class names per number of COCO-Stuff classes (27: every coarse category, things and stuff).
CLASS_NAMES = {3: STUFF3_NAMES, 15: STUFF15_NAMES, 27: COARSE_NAMES}


def fine_to_target_table(classes: int, fine_to_coarse: np.ndarray = FINE_TO_COARSE, *,
                         unlabelled_as_sky: bool = False) -> np.ndarray:
    """Lookup table (256,) int64 from PNG value to target class, -1 for masked pixels.

    ``classes`` 3: sky/plant/ground -> 0/1/2, everything else (things, other stuff, 255) -> -1.
    ``classes`` 15: coarse stuff 12..26 -> 0..14, things and unlabelled -> -1.
    ``classes`` 27: every coarse category 0..26 (COCO-Stuff-27 of PiCIE / STEGO), unlabelled -> -1.

    ``unlabelled_as_sky`` (3 classes only) reproduces the original IIC's COCO-Stuff-3 labels: its
    label filter starts from zeros and overwrites only the fine classes 0..181, so unlabelled pixels
    (255, read as -1) stay 0 = sky and are counted, in the training loss and in the evaluation
    (the paper's 72.3 was measured that way). Off: they are masked out, as the original's comment
    intends and COCO-Stuff-15 does."""
    if unlabelled_as_sky and classes != 3:
        raise ValueError(f"unlabelled_as_sky applies to COCO-Stuff-3 only, got classes={classes}")
    lut = np.full(256, -1, dtype=np.int64)
    coarse = np.asarray(fine_to_coarse, dtype=np.int64)
    if classes == 3:
        for k, name in enumerate(STUFF3_NAMES):
            lut[:182][coarse == COARSE_NAMES.index(name)] = k
        if unlabelled_as_sky:
            lut[255] = STUFF3_NAMES.index("sky")
    elif classes == 15:
        stuff = coarse >= 12
        lut[:182][stuff] = coarse[stuff] - 12
    elif classes == 27:
        lut[:182] = coarse
    else:
        raise ValueError(f"COCO-Stuff classes must be 3, 15 or 27, got {classes}")
    return lut
