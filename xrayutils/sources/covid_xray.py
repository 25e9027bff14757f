"""covid-xray: the class-challenge study's data, COVID-19, normal and pneumonia images in class folders (chapters 01, 02)."""

from xrayutils.sources.base import ClassFolders

#: The record :mod:`xrayutils.datasets` assembles.
SOURCE = ClassFolders(
    name="covid-xray",
    classes={"two": ["covid", "normal"], "all": ["covid", "normal", "pneumonia_bac", "pneumonia_vir"]},
    upstream="https://github.com/mdshopon/COVID19_Classification (folders data_two_class -> two/, data_four_class -> all/)",
    layout="covid-xray/two/{train,test}/{covid,normal}/<images>\n"
           "covid-xray/all/{train,test}/{covid,normal,pneumonia_bac,pneumonia_vir}/<images>",
    about=(
        "COVID-19 images from the COVID-19 image data collection of Cohen et al. (mostly adults, many cut from "
        "figures in journal articles, some with text, arrows or lateral views; each image under its own licence "
        "in that collection's metadata). Normal and pneumonia images from the paediatric chest X-rays of Kermany "
        "et al. (2018, one hospital in Guangzhou, children aged 1-5, CC BY 4.0). Classes therefore differ in "
        "source, age and image processing as well as in disease."
    ),
    fetch="covid-xray (GitHub, downloaded by pooch)",
    # mdshopon/COVID19_Classification: 80 training and 31 test images per class
    full_size={"two": {"train": 160, "test": 62}, "all": {"train": 320, "test": 124}},
    archive="https://github.com/mdshopon/COVID19_Classification/archive/refs/heads/master.zip",
    archive_folders={"two": "data_two_class", "all": "data_four_class"},
)
