"""Networks net(x, t, cond) -> Tensor: residual MLP, voxel transformer, point-cloud networks."""
