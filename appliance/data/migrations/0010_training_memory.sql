-- Memory in use by the training process (CUDA: peak allocated; CPU: resident set) at each logged step.
ALTER TABLE training_metrics ADD COLUMN memory_mb REAL;
