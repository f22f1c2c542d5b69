"""The course's technical terms in English and Chinese, with the lesson that introduces each.

Many readers meet these ideas first in Chinese; the seed articles of the course were written in it.
Lesson 00 shows the table (:func:`markdown_table`) and the README carries the same rows (a test keeps them
in step).
"""

from __future__ import annotations

#: ``(English, Chinese, lesson)``, in the order the course introduces them
GLOSSARY: list[tuple[str, str, str]] = [
    ("meta-learning (learning to learn)", "元学习（学会学习）", "00"),
    ("few-shot learning", "少样本学习", "00"),
    ("one-shot learning", "单样本学习", "00"),
    ("N-way K-shot task", "N 类 K 样本任务（N-way K-shot）", "00"),
    ("task, episode", "任务（episode）", "00"),
    ("support set", "支持集", "00"),
    ("query set", "查询集", "00"),
    ("meta-training / meta-validation / meta-test", "元训练 / 元验证 / 元测试", "00"),
    ("meta-batch", "元批次", "00"),
    ("confidence interval", "置信区间", "00"),
    ("overfitting", "过拟合", "01"),
    ("generalisation", "泛化", "01"),
    ("learning curve", "学习曲线", "01"),
    ("model capacity", "模型容量", "01"),
    ("data augmentation", "数据增强", "01"),
    ("embedding", "嵌入（表示向量）", "02"),
    ("backbone, encoder", "骨干网络，编码器", "02"),
    ("metric learning", "度量学习", "02"),
    ("Siamese network", "孪生网络", "02"),
    ("contrastive loss", "对比损失", "02"),
    ("triplet loss", "三元组损失", "02"),
    ("margin", "间隔（边距）", "02"),
    ("hard-example mining", "难例挖掘", "02"),
    ("Euclidean distance", "欧氏距离", "02"),
    ("cosine similarity", "余弦相似度", "02"),
    ("prototype", "原型", "03"),
    ("Prototypical Network", "原型网络", "03"),
    ("Matching Network (attention over the support set)", "匹配网络（对支持集的注意力）", "03"),
    ("Relation Network (a learned comparison)", "关系网络（可学习的比较函数）", "03"),
    ("Bregman divergence", "布雷格曼散度", "03"),
    ("transductive / inductive evaluation", "直推式 / 归纳式评估", "03"),
    ("batch normalisation", "批归一化", "03"),
    ("MAML (model-agnostic meta-learning)", "模型无关元学习（MAML）", "04"),
    ("inner loop", "内循环", "04"),
    ("outer loop", "外循环", "04"),
    ("meta-gradient", "元梯度", "04"),
    ("Hessian", "海森矩阵", "04"),
    ("first-order approximation", "一阶近似", "04"),
    ("Reptile", "Reptile（一阶元学习算法）", "04"),
    ("Meta-SGD (learned learning rates)", "Meta-SGD（可学习的学习率）", "04"),
    ("ANIL (almost no inner loop)", "ANIL（几乎无内循环）", "04"),
    ("Proto-MAML (prototype-initialised head)", "Proto-MAML（用原型初始化分类头的 MAML）", "04"),
    ("learning rate / meta learning rate", "学习率 / 元学习率", "04"),
    ("fast adaptation", "快速适应", "04"),
    ("Neural Turing Machine", "神经图灵机", "05"),
    ("external memory", "外部记忆", "05"),
    ("read head / write head", "读头 / 写头", "05"),
    ("content-based addressing", "基于内容的寻址", "05"),
    ("memory-augmented neural network (MANN)", "记忆增强神经网络", "05"),
    ("least-recently-used access", "最近最少使用访问", "05"),
    ("transfer learning", "迁移学习", "06"),
    ("pretraining", "预训练", "06"),
    ("fine-tuning", "微调", "06"),
    ("linear probe", "线性探测", "06"),
    ("source domain / target domain", "源域 / 目标域", "06"),
    ("domain shift", "领域偏移", "06"),
    ("negative transfer", "负迁移", "06"),
    ("learned optimiser", "可学习的优化器", "07"),
    ("optimisee", "被优化的模型", "07"),
    ("Meta-LSTM (an LSTM as the optimiser)", "元 LSTM（以 LSTM 为优化器）", "07"),
    ("input gate / forget gate", "输入门 / 遗忘门", "07"),
    ("truncated backpropagation through time", "截断的随时间反向传播", "07"),
]


def markdown_table() -> str:
    """The glossary as a Markdown table, one term per line."""
    rows = ["| English | 中文 | lesson |", "|---|---|---|"]
    rows += [f"| {en} | {zh} | {lesson} |" for en, zh, lesson in GLOSSARY]
    return "\n".join(rows)
