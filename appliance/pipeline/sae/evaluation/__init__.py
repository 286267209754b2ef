"""How much of the model an SAE keeps: the spliced evaluation, at the end of a training and on demand."""
