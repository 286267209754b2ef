-- The sparsity coefficient each logged step trained with (target-L0 mode adapts it; NULL for TopK-like SAEs).
ALTER TABLE training_metrics ADD COLUMN sparsity_coefficient REAL;
