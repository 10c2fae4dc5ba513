"""energyctl serve held against the case study's design served the conventional way (see __main__)."""
