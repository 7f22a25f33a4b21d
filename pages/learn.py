"""Learn: how to read the dashboard, a guided tour for a lecture, and the four papers."""

import streamlit as st

from dashboard.components.teaching import PAPERS

st.title("Learn")
st.markdown("""
**Robustness Atlas** shows *why* neural networks break under tiny, deliberately chosen input changes —
adversarial examples — and what adversarial training changes inside them.

#### Reading the dashboard
- **ε (epsilon)** is the attacker's budget: how far each pixel may move, in the image's own [0, 1] scale.
  ε = 0.1 on a digit means every pixel may change by at most a tenth of black-to-white.
- **Clean accuracy** is accuracy on untouched test images; **robust accuracy** is accuracy when an attacker
  (PGD: many small gradient steps, each projected back into the ε-ball) gets to perturb every test image.
- **Standard (ERM)** models are accurate but fragile; **adversarially trained** models (PGD-AT, TRADES,
  FGSM-RS) are far more robust. On hard data such as CIFAR-10 that usually costs clean accuracy; on the small
  digits set it costs almost none. The hub's scatter shows where each model sits.
- The sidebar's **primary** and **comparison** models are used side by side on every page.

#### A 20-minute tour for a lecture
1. **Model hub** — show the scatter: the standard digits model is accurate but sits low (about half of the
   test digits fall to a PGD attack at ε = 0.1); the PGD-AT model is as accurate and far more robust. PGD-AT is
   already the primary model and ERM the comparison.
2. **Train** — start a 5-epoch PGD-AT run on digits (about half a minute on a laptop) and watch clean and robust
   accuracy climb epoch by epoch, and which digits stay easy to attack in the per-class heatmap.
3. **Attack Lab** — pick a digit, move the ε slider from 0 upwards and watch where each model's prediction
   flips: the standard model first (on the default example, a 0, at ε ≈ 0.15 against ≈ 0.22 for PGD-AT; half of
   all test digits already flip by ε = 0.1 for it, fewer than one in ten for PGD-AT). *Among those that flip*
   lists the digits the primary model loses within its own ε. The middle image is the perturbation, amplified;
   on the robust model it starts to draw strokes of the other digit.
4. **Robustness** — the curves show the whole test set at once; below them, which digits are weakest and where
   their errors go, and the trust panel checks that the numbers are not an artefact of masked gradients.
5. **Geometry** — the same digit, sliced: along the DeepFool normal the boundary is close and curved, along a
   random direction far and flat. Each panel's caption gives the model's own DeepFool distance (on the default 0:
   ≈ 0.89 in ℓ2 for the standard model, ≈ 1.48 for PGD-AT). Set *Direction û of* to **comparison**, the
   standard model's weakest direction: there its boundary crosses at ≈ 0.8 and PGD-AT's twice as far out (≈ 1.7).
   On PGD-AT's own normal (primary) both are far: the robust model's weakest direction is not the standard
   model's. *Loss landscape* marks the ε-ball's section on the floor and says how far each model's loss rises
   inside it, measured; past the boundary the loss climbs, and its height there says how sure the model is
   of the other class, not how robust it is. The last tab finds one *universal* perturbation that fools most
   digits at once.
6. **Latent space** — scrub ε on the map of the penultimate layer: the standard model's adversarial twins leave
   their class's cluster for another's at small ε, the PGD-AT model's stay home much longer. Box a cluster to see
   which digits are in it.
7. **Trade-off Explorer** — the shipped DALE model is as accurate as PGD-AT and nearly as robust; its loss chart
   shows the clean loss held under the bound ρ while the dual variable ν adjusts. Tune a logit bias for the
   weakest digit and see what it costs.
8. **Features** and **Theory Lab** — which pixels each model leans on, clean and attacked; then the model problem
   where the theory is exact: run standard and adversarial training side by side and watch which feature wins.
9. **Playground** — for the first minutes of a class: two-moon data, a small network trained live, standard and
   adversarial side by side; turn on the ε-balls and arrows to show which points an attacker can flip, and the
   Langevin panel shows DALE's cloud of perturbations collapsing to PGD's single point as the temperature goes
   to 0 (at T = 0 exactly, onto the open star where PGD's fixed steps stop when they zigzag across a kink of the
   loss; the least noise lets the chains slide on to the filled star, where PGD's climb ends).
10. Ask the room: *why would training on attacked images make a model harder to attack, and what does it cost?*
   Then open the papers below.
""")
st.subheader("The four papers behind the Atlas")
for key in ("geometry", "dale", "lili", "classwise"):
    title, url = PAPERS[key]
    st.markdown(f"- [{title}]({url})")
st.caption("Also: Madry et al. 2018 (PGD adversarial training), Wong et al. 2020 (FGSM-RS), Zhang et al. 2019 "
           "(TRADES), de Jorge et al. 2022 (N-FGSM).")
