"""leuk: leukemic-cell classification from blood-smear microscopy.

Honest reference implementations of EfficientNet-SE (ALL vs HEM, C-NMC 2019) and HybridCN-NAS
(4 B-ALL classes, Aria et al.), with patient-wise evaluation, Monte Carlo statistics, Captum
explanations, Hugging Face Hub distribution and two apps.
"""

__version__ = "0.1.0"
