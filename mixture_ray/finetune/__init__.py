"""`mixture-ray finetune`: finding classifiers from an ElEx and integrated cluster labels."""
