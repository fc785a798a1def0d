"""One module per paper, each holding its registry entries and the experiments (and
pictures) that measure them: ``ncsn`` (Song & Ermon 2019), ``ncsnv2`` (Song & Ermon
2020), ``dpm`` (Sohl-Dickstein et al. 2015), ``ddpm`` (Ho et al. 2020, with Improved
DDPM's objectives), ``ddim`` (Song et al. 2020), ``fast`` (the fast samplers on DDPM's
weights) and ``vae`` (Kingma & Welling 2013). ``diffusion.reproduce.registry`` lists the
entries."""
