"""'What am I looking at?' notes, shown on every page while teaching mode is on."""

from __future__ import annotations

import streamlit as st

from dashboard import state

PAPERS = {
    "geometry": ("Ortiz-Jimenez, Modas, Moosavi-Dezfooli, Frossard (2021). Optimism in the Face of Adversity: "
                 "Understanding and Improving Deep Learning through Adversarial Robustness. Proc. IEEE.",
                 "https://arxiv.org/abs/2010.09624"),
    "dale": ("Robey, Chamon, Pappas, Hassani, Ribeiro (2021). Adversarial Robustness with Semi-Infinite "
             "Constrained Learning. NeurIPS.", "https://arxiv.org/abs/2110.15767"),
    "lili": ("Li & Li (2024). Adversarial Training Can Provably Improve Robustness: Theoretical Analysis of "
             "Feature Learning Process Under Structured Data. arXiv 2410.08503.", "https://arxiv.org/abs/2410.08503"),
    "classwise": ("Tian, Zhou, Liang, Wang, Cheng (2021). Analysis and Applications of Class-wise Robustness in "
                  "Adversarial Training. KDD.", "https://arxiv.org/abs/2105.14240"),
    "madry": ("Madry, Makelov, Schmidt, Tsipras, Vladu (2018). Towards Deep Learning Models Resistant to "
              "Adversarial Attacks. ICLR.", "https://arxiv.org/abs/1706.06083"),
}


def explain(text: str, *papers: str) -> None:
    """A collapsible explanation with its papers; hidden when teaching mode is off."""
    if not st.session_state.get(state.TEACHING, True):
        return
    with st.expander("What am I looking at?", icon=":material/school:"):
        st.markdown(text)
        for key in papers:
            title, url = PAPERS[key]
            st.markdown(f"- [{title}]({url})")
